// llmserve's built-in chat page: streams /v1/chat/completions with fetch and parses its SSE by hand.
// Model output is untrusted: it is only ever put into the page as text nodes (the Markdown renderer below
// builds elements and never assigns HTML), and the page's Content-Security-Policy allows no inline script.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "llmserve.apiKey";

const state = {
  history: [], // the conversation as OpenAI messages
  images: [], // data URLs waiting to be sent with the next message
  controller: null, // the running request's AbortController
};

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

// An error response in words: OpenAI's envelope message, and when a retry can help, when.
async function describeError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = `${response.status}: ${body.error.message}`;
  } catch (_) {
    // Not JSON: the status line says enough.
  }
  const retry = response.headers.get("retry-after");
  if (response.status === 429 || (response.status === 503 && retry)) {
    message += retry ? ` Retry in ${retry} s.` : " Retry shortly.";
  }
  if (response.status === 401) message += " Enter an API key on the left.";
  return message;
}

async function loadModels() {
  const select = $("model");
  const previous = select.value;
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) {
      showError(await describeError(response));
      return;
    }
    const models = (await response.json()).data || [];
    select.replaceChildren();
    for (const model of models) {
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.status && model.status !== "ready" ? `${model.id} (${model.status})` : model.id;
      select.append(option);
    }
    if (models.some((m) => m.id === previous)) select.value = previous;
    showError("");
  } catch (error) {
    showError(`Could not list models: ${error.message}`);
  }
}

// ---- Markdown, safely: elements built from text nodes only -------------------------------------------

function appendInline(parent, text) {
  // `code`, **bold**, *italic* / _italic_, [label](http(s) URL); everything else stays text.
  // As in CommonMark, `_` inside a word (snake_case, __dunder__) is not emphasis.
  const pattern = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*|(?<!\w)_[^_\n]+_(?!\w))|(\[[^\]\n]+\]\([^)\s]+\))/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
    const token = match[0];
    let node;
    if (match[1]) {
      node = document.createElement("code");
      node.textContent = token.slice(1, -1);
    } else if (match[2]) {
      node = document.createElement("strong");
      appendInline(node, token.slice(2, -2));
    } else if (match[3]) {
      node = document.createElement("em");
      appendInline(node, token.slice(1, -1));
    } else {
      const label = token.slice(1, token.indexOf("]("));
      const href = token.slice(token.indexOf("](") + 2, -1);
      let url = null;
      try {
        url = new URL(href);
      } catch (_) {
        url = null;
      }
      if (url && (url.protocol === "https:" || url.protocol === "http:")) {
        node = document.createElement("a");
        node.href = url.href;
        node.rel = "noopener noreferrer nofollow";
        node.target = "_blank";
        node.textContent = label;
      } else {
        node = document.createTextNode(token);
      }
    }
    parent.append(node);
    last = match.index + token.length;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

function renderMarkdown(container, text) {
  const blocks = document.createDocumentFragment();
  const lines = text.split("\n");
  let paragraph = [];
  let list = null;
  const flush = () => {
    if (paragraph.length) {
      const p = document.createElement("p");
      paragraph.forEach((line, i) => {
        if (i) p.append(document.createElement("br"));
        appendInline(p, line);
      });
      blocks.append(p);
      paragraph = [];
    }
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      flush();
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      const pre = document.createElement("pre");
      const element = document.createElement("code");
      element.textContent = code.join("\n");
      pre.append(element);
      blocks.append(pre);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*(?:([-*+])|(\d+)[.)])\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      const h = document.createElement(`h${Math.min(heading[1].length + 2, 6)}`);
      appendInline(h, heading[2]);
      blocks.append(h);
    } else if (item) {
      if (paragraph.length) flush();
      const kind = item[1] ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== kind) {
        list = document.createElement(kind);
        blocks.append(list);
      }
      const li = document.createElement("li");
      if (item[2]) li.value = Number(item[2]); // items split by blank lines keep their numbers
      appendInline(li, item[3]);
      list.append(li);
    } else if (!line.trim()) {
      flush();
    } else {
      list = null;
      paragraph.push(line);
    }
  }
  flush();
  container.replaceChildren(blocks);
}

// ---- Messages -----------------------------------------------------------------------------------------

function addMessage(role, text, images) {
  const box = document.createElement("div");
  box.className = `message ${role}`;
  const label = document.createElement("div");
  label.className = "role";
  label.textContent = role;
  const body = document.createElement("div");
  body.className = "body";
  box.append(label, body);
  for (const url of images || []) {
    const img = document.createElement("img");
    img.className = "attached";
    img.alt = "attached image";
    img.src = url; // a data URL the user picked, never model output
    box.append(img);
  }
  renderMarkdown(body, text);
  const stats = document.createElement("div");
  stats.className = "stats";
  box.append(stats);
  $("messages").append(box);
  box.scrollIntoView({ block: "end" });
  return { body, stats };
}

function setRunning(running) {
  $("send").disabled = running;
  $("stop").disabled = !running;
  $("status").textContent = running ? "generating…" : "";
}

// The SSE stream of a chat completion: calls `onEvent` with each `data:` JSON; returns at `[DONE]`.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue; // `: ping` keep-alives and the like
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(event) {
  event.preventDefault();
  if (state.controller) return;
  const text = $("prompt").value.trim();
  if (!text && !state.images.length) return;
  showError("");
  const content = state.images.length
    ? [{ type: "text", text }, ...state.images.map((url) => ({ type: "image_url", image_url: { url } }))]
    : text;
  const userMessage = { role: "user", content };
  const question = addMessage("user", text, state.images);
  const attached = state.images;
  state.images = [];
  $("attachments").replaceChildren();
  $("prompt").value = "";

  const system = $("system").value.trim();
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...state.history, userMessage];
  const body = {
    model: $("model").value || undefined,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  };
  const temperature = $("temperature").value;
  if (temperature !== "") body.temperature = Number(temperature);
  const maxTokens = $("max-tokens").value;
  if (maxTokens !== "") body.max_tokens = Number(maxTokens);

  const answer = addMessage("assistant", "");
  let reply = "";
  let pieces = 0;
  let usage = null;
  let firstAt = null;
  let stopped = false;
  let refused = false;
  const startedAt = performance.now();
  state.controller = new AbortController();
  setRunning(true);
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(body),
      signal: state.controller.signal,
    });
    if (!response.ok) {
      // Refused before any answer: the question goes back into the box, to fix and send again.
      refused = true;
      showError(await describeError(response));
      return;
    }
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        if (firstAt === null) firstAt = performance.now();
        reply += delta.content;
        pieces += 1;
        renderMarkdown(answer.body, reply);
        answer.body.parentElement.scrollIntoView({ block: "end" });
      }
    });
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else showError(`The answer stopped: ${error.message}`);
  } finally {
    const endedAt = performance.now();
    state.controller = null;
    setRunning(false);
    if (refused) {
      question.body.parentElement.remove();
      answer.body.parentElement.remove();
      $("prompt").value = text;
      state.images = attached;
      return;
    }
    state.history.push(userMessage);
    if (reply) state.history.push({ role: "assistant", content: reply });
    const tokens = usage ? usage.completion_tokens : pieces;
    const parts = [];
    if (firstAt !== null) parts.push(`TTFT ${Math.round(firstAt - startedAt)} ms`);
    if (firstAt !== null && endedAt > firstAt && tokens > 1) {
      parts.push(`${((tokens - 1) / ((endedAt - firstAt) / 1000)).toFixed(1)} tokens/s`);
    }
    parts.push(`${tokens} tokens`);
    if (stopped) parts.push("stopped");
    answer.stats.textContent = parts.join(" · ");
  }
}

function attach(event) {
  for (const file of event.target.files) {
    const reader = new FileReader();
    reader.onload = () => {
      state.images.push(reader.result);
      const img = document.createElement("img");
      img.alt = file.name;
      img.src = reader.result;
      $("attachments").append(img);
    };
    reader.readAsDataURL(file);
  }
  event.target.value = "";
}

function init() {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, key.value.trim());
    loadModels();
  });
  $("composer").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) send(e);
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("new-chat").addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    state.history = [];
    $("messages").replaceChildren();
    showError("");
  });
  $("image").addEventListener("change", attach);
  loadModels();
}

init();
