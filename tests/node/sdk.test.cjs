// The official `openai` Node SDK against llmserve with the real model: plain and streamed chat and
// completions, n, seed, logprobs, structured output, tool calls (with the SDK's stream accumulator and
// runTools), and errors as the SDK's exception classes.
const test = require("node:test");
const assert = require("node:assert/strict");
const OpenAI = require("openai");

const client = new OpenAI({ baseURL: process.env.LLMSERVE_BASE_URL, apiKey: "unused", maxRetries: 0, timeout: 300_000 });
const model = process.env.LLMSERVE_MODEL;
const HELLO = [{ role: "user", content: "Say hello in one short sentence." }];
const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
      required: ["city", "unit"],
      additionalProperties: false,
    },
  },
};

test("models list", async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  assert.deepEqual(models, [model]);
});

test("chat, plain and streamed, agree under greedy decoding", async () => {
  const plain = await client.chat.completions.create({ model, messages: HELLO, max_tokens: 12, temperature: 0 });
  assert.equal(plain.object, "chat.completion");
  assert.ok(plain.choices[0].message.content);
  const stream = await client.chat.completions.create({
    model, messages: HELLO, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = "";
  let usage;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.equal(text, plain.choices[0].message.content);
  assert.equal(usage.completion_tokens, plain.usage.completion_tokens);
});

test("the stream helper accumulates content and logprobs", async () => {
  const runner = client.chat.completions.stream({
    model, messages: HELLO, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  const final = await runner.finalChatCompletion();
  const content = final.choices[0].logprobs.content;
  assert.ok(content.length > 0);
  assert.equal(content.map((t) => t.token).join("").trim(), final.choices[0].message.content.trim());
  for (const t of content) assert.equal(t.top_logprobs.length, 2);
});

test("n choices and seeded sampling", async () => {
  const choices = await client.chat.completions.create({ model, messages: HELLO, n: 2, max_tokens: 10, temperature: 1.0 });
  assert.deepEqual(choices.choices.map((c) => c.index), [0, 1]);
  // One sequence at a time, so the engine computes the same logits both times (see docs/compatibility.md).
  const request = { model, messages: HELLO, max_tokens: 10, temperature: 1.0, seed: 42 };
  const a = await client.chat.completions.create(request);
  const b = await client.chat.completions.create(request);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test("json_schema output parses and validates", async () => {
  const completion = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Give me a city." }], max_tokens: 80, temperature: 0,
    response_format: {
      type: "json_schema",
      json_schema: {
        name: "city", strict: true,
        schema: { type: "object", properties: { name: { type: "string" }, population: { type: "integer" } },
                  required: ["name", "population"], additionalProperties: false },
      },
    },
  });
  const city = JSON.parse(completion.choices[0].message.content);
  assert.equal(typeof city.name, "string");
  assert.ok(Number.isInteger(city.population));
});

test("a required tool call streams and the accumulator assembles it", async () => {
  const runner = client.chat.completions.stream({
    model, messages: [{ role: "user", content: "What is the weather in Paris?" }], tools: [WEATHER],
    tool_choice: "required", max_tokens: 80, temperature: 0,
  });
  const final = await runner.finalChatCompletion();
  const choice = final.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  const call = choice.message.tool_calls[0];
  assert.equal(call.function.name, "get_weather");
  assert.ok(call.id.startsWith("call_"));
  const args = JSON.parse(call.function.arguments);
  assert.ok(["celsius", "fahrenheit"].includes(args.unit));
});

test("runTools calls the function and sends the result back", async () => {
  const calls = [];
  const runner = client.chat.completions.runTools({
    model, messages: [{ role: "user", content: "What is the weather in Rome?" }], max_tokens: 60, temperature: 0,
    tool_choice: { type: "function", function: { name: "get_weather" } },
    tools: [{
      type: "function",
      function: {
        name: "get_weather", parameters: WEATHER.function.parameters,
        function: (args) => { calls.push(args); return { temperature: 21 }; }, parse: JSON.parse,
      },
    }],
  }, { maxChatCompletions: 2 });
  await runner.done().catch(() => {});
  assert.ok(calls.length >= 1);
  assert.equal(typeof calls[0].city, "string");
  const toolMessages = runner.messages.filter((m) => m.role === "tool");
  assert.ok(toolMessages.length >= 1);
});

test("completions with logprobs, echo and suffix", async () => {
  const completion = await client.completions.create({
    model, prompt: "The capital of France is", max_tokens: 4, temperature: 0, logprobs: 2,
  });
  const lp = completion.choices[0].logprobs;
  assert.equal(lp.tokens.join(""), completion.choices[0].text);
  const echoed = await client.completions.create({ model, prompt: "Hello", max_tokens: 3, temperature: 0, echo: true, stream: true });
  let text = "";
  for await (const chunk of echoed) text += chunk.choices[0]?.text ?? "";
  assert.ok(text.startsWith("Hello"));
  // No fill-in-the-middle tokens in SmolLM2: a suffix is refused, never ignored.
  await assert.rejects(
    client.completions.create({ model, prompt: "def f(x):\n    return ", suffix: "\n", max_tokens: 6 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "suffix",
  );
});

test("errors are the SDK's exception classes", async () => {
  await assert.rejects(
    client.chat.completions.create({ model, messages: HELLO, temperature: 9 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "temperature",
  );
  await assert.rejects(
    client.chat.completions.create({ model: "nope", messages: HELLO }),
    (e) => e instanceof OpenAI.NotFoundError,
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: HELLO, logit_bias: { "99999999": 5 } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "logit_bias",
  );
});

// A vision model (the tiny Idefics3 the Rust harness writes), sent screenshots as base64 PNG data URLs.
const vision = new OpenAI({ baseURL: process.env.LLMSERVE_VISION_BASE_URL, apiKey: "unused", maxRetries: 0 });
const visionModel = process.env.LLMSERVE_VISION_MODEL;
const SCREEN_A =
  "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAbElEQVR4nA3JQQEAMAgDMZSgpEqqhOepQAlKqmjLN1VFFypcTLHFFSmqm" +
  "m7UuJlmm2vSP0QLCYsRK05EP0wbGZsxa87EP4YeNHiYYYcbMj+WXrR4mWWXW7I/jj50+JhjjztyP0IHBYcJGy4kPLAsVIExyOP/AAAAAElFTkSuQmCC";
const screen = (...pngs) => [
  {
    role: "user",
    content: [
      ...pngs.map((png) => ({ type: "image_url", image_url: { url: `data:image/png;base64,${png}` } })),
      { type: "text", text: "What is on the screen?" },
    ],
  },
];

test("a vision model reads a screenshot, plain and streamed", async () => {
  const ask = (...pngs) =>
    vision.chat.completions.create({ model: visionModel, messages: screen(...pngs), max_tokens: 4, temperature: 0 });
  const [textOnly, withImage] = [await ask(), await ask(SCREEN_A)];
  assert.ok(withImage.usage.prompt_tokens >= textOnly.usage.prompt_tokens + 4, JSON.stringify(withImage.usage));
  const stream = vision.chat.completions.stream({
    model: visionModel,
    messages: screen(SCREEN_A),
    max_tokens: 4,
    temperature: 0,
  });
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].message.content, withImage.choices[0].message.content);
});

test("responses: create, stream with numbered events, the stream helper, chaining and a function call", async () => {
  const plain = await client.responses.create({ model, input: "Name three colours.", max_output_tokens: 30, temperature: 0 });
  assert.equal(plain.object, "response");
  assert.ok(plain.id.startsWith("resp_"));
  assert.ok(plain.output_text.length > 0);
  assert.equal(plain.usage.total_tokens, plain.usage.input_tokens + plain.usage.output_tokens);

  const stream = await client.responses.create({
    model, input: "Name three colours.", max_output_tokens: 30, temperature: 0, stream: true,
  });
  const events = [];
  for await (const event of stream) events.push(event);
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  assert.deepEqual(events.slice(0, 2).map((e) => e.type), ["response.created", "response.in_progress"]);
  const text = events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("");
  assert.equal(text, plain.output_text, "streamed and whole agree under greedy decoding");
  assert.ok(["response.completed", "response.incomplete"].includes(events.at(-1).type));

  const helper = client.responses.stream({ model, input: "Say hi.", max_output_tokens: 100, temperature: 0 });
  let deltas = "";
  helper.on("response.output_text.delta", (e) => { deltas += e.delta; });
  const final = await helper.finalResponse();
  assert.equal(final.status, "completed");
  assert.equal(final.output[0].content[0].text, deltas);

  const next = await client.responses.create({
    model, previous_response_id: plain.id, input: "Which one is your favourite?", max_output_tokens: 20, temperature: 0,
  });
  assert.ok(next.usage.input_tokens > plain.usage.input_tokens + plain.usage.output_tokens);

  const tool = { type: "function", name: "get_weather", parameters: WEATHER.function.parameters };
  const called = await client.responses.create({
    model, input: "Weather in Oslo?", tools: [tool], tool_choice: "required", max_output_tokens: 60, temperature: 0,
  });
  const call = called.output.find((item) => item.type === "function_call");
  assert.equal(call.name, "get_weather");
  assert.ok(JSON.parse(call.arguments).city);
  const answered = await client.responses.create({
    model, previous_response_id: called.id, tool_choice: "none", tools: [tool], max_output_tokens: 20, temperature: 0,
    input: [{ type: "function_call_output", call_id: call.call_id, output: "Snow, -3 C" }],
  });
  assert.ok(answered.output_text.length > 0);

  await assert.rejects(
    client.responses.create({ model, input: "x", tools: [{ type: "web_search" }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "tools[0].type",
  );
});
