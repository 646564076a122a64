// The official `openai` Node SDK's embeddings against the tiny Qwen3-Embedding (tests/integration/embeddings.rs):
// floats, the SDK's default base64 decoded by the SDK, a batch in order, and dimensions.
const test = require("node:test");
const assert = require("node:assert/strict");
const OpenAI = require("openai");

const client = new OpenAI({ baseURL: process.env.LLMSERVE_EMBED_BASE_URL, apiKey: "unused", maxRetries: 0 });
const model = process.env.LLMSERVE_EMBED_MODEL;
const width = Number(process.env.LLMSERVE_EMBED_DIMENSIONS);
const norm = (v) => Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));

test("embeddings: floats, base64, a batch and dimensions", async () => {
  const floats = await client.embeddings.create({ model, input: "hello world", encoding_format: "float" });
  const vector = floats.data[0].embedding;
  assert.equal(vector.length, width);
  assert.ok(Math.abs(norm(vector) - 1) < 1e-3);
  // Without encoding_format the SDK asks for base64 and decodes it.
  const decoded = (await client.embeddings.create({ model, input: "hello world" })).data[0].embedding;
  // The same f32 values (JSON writes each as its shortest decimal).
  assert.deepEqual(Array.from(decoded), Array.from(Float32Array.from(vector)));
  const batch = await client.embeddings.create({ model, input: ["a cat", "hello world"], encoding_format: "float" });
  assert.deepEqual(batch.data.map((d) => d.index), [0, 1]);
  assert.ok(batch.data[1].embedding.every((x, i) => Math.abs(x - vector[i]) < 1e-4));
  const short = await client.embeddings.create({ model, input: "hello world", dimensions: 8, encoding_format: "float" });
  assert.equal(short.data[0].embedding.length, 8);
  assert.ok(Math.abs(norm(short.data[0].embedding) - 1) < 1e-4);
  await assert.rejects(
    client.embeddings.create({ model, input: "x", dimensions: width + 1 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "dimensions",
  );
});
