//! Refuses to start, with a message, on an x86-64 CPU that lacks the instructions this build uses.
//!
//! Builds target x86-64-v3 (`.cargo/config.toml`: AVX2, FMA, F16C, BMI1/2, MOVBE), so any Rust code,
//! std's start-up included, may use them, and on an older CPU the process would die of SIGILL before
//! `main` could explain. The check is therefore written in assembly, which no compiler rewrites, and runs
//! from `.preinit_array`: before every constructor and before Rust's runtime starts. It asks CPUID for
//! the features and XGETBV whether the OS saves the 256-bit registers; if anything is missing it writes
//! one line to stderr and exits with status 1 (plain syscalls, no libc).
//!
//! Part of the binary crate only (declared in `main.rs`): an object in the library's archive would be
//! left out by the linker, since nothing refers to it.

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_feature = "avx2"))]
std::arch::global_asm!(
    r#"
    .pushsection .text.llmserve_require_x86_64_v3,"ax",@progbits
    .p2align 4
llmserve_require_x86_64_v3:
    push rbx
    xor eax, eax
    cpuid
    cmp eax, 7
    jb 2f
    // Leaf 1, ecx: FMA (12), MOVBE (22), OSXSAVE (27), AVX (28), F16C (29).
    mov eax, 1
    xor ecx, ecx
    cpuid
    and ecx, 0x38401000
    cmp ecx, 0x38401000
    jne 2f
    // XCR0: the OS saves SSE (1) and AVX (2) state.
    xor ecx, ecx
    xgetbv
    and eax, 6
    cmp eax, 6
    jne 2f
    // Leaf 7, ebx: BMI1 (3), AVX2 (5), BMI2 (8).
    mov eax, 7
    xor ecx, ecx
    cpuid
    and ebx, 0x128
    cmp ebx, 0x128
    jne 2f
    pop rbx
    ret
2:
    mov eax, 1
    mov edi, 2
    lea rsi, [rip + llmserve_cpu_message]
    mov edx, offset llmserve_cpu_message_len
    syscall
    mov eax, 231
    mov edi, 1
    syscall
    ud2
    .popsection

    .pushsection .rodata.llmserve_cpu_message,"a",@progbits
llmserve_cpu_message:
    .ascii "llmserve: this CPU lacks AVX2, FMA, F16C, BMI1/2 or MOVBE, which this build uses (x86-64-v3). "
    .ascii "Build for any x86-64 CPU with RUSTFLAGS=\"-C target-cpu=x86-64\" (slower; README, \"CPU kernels\").\n"
    .set llmserve_cpu_message_len, . - llmserve_cpu_message
    .popsection

    .pushsection .preinit_array,"aw",@preinit_array
    .p2align 3
    .quad llmserve_require_x86_64_v3
    .popsection
"#
);
