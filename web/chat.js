// chat.js - llamad's chat page: a conversation streamed from
// /v1/chat/completions over SSE (fetch + ReadableStream), on the same
// origin as the page.  The API key, when the server asks for one, lives in
// sessionStorage (this tab only) and goes out as "Authorization: Bearer";
// never in a URL.  Text from the model reaches the DOM only as textContent.
"use strict";

const KEY_ITEM = "llamad-api-key";
const $ = (id) => document.getElementById(id);

const messages = [];      // the conversation: {role, content}, without the system prompt
let controller = null;    // the AbortController of the request in flight

function api_key() { return sessionStorage.getItem(KEY_ITEM) || ""; }

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = api_key();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function show_error(text) {
  const e = $("error");
  e.textContent = text;
  e.hidden = !text;
}

function ask_key(why) {
  $("keybox").hidden = false;
  $("forget").hidden = !api_key();
  show_error(why || "");
  $("key").focus();
}

function add_message(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("log").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

// The error message of a non-2xx answer (OpenAI's {"error": {"message"}}), else its status.
async function error_text(res) {
  try {
    const j = await res.json();
    if (j && j.error && j.error.message) return res.status + ": " + j.error.message;
  } catch (_) { /* not JSON */ }
  return "HTTP " + res.status;
}

// GET /v1/models: the model's name, and whether the key (if any) is good.
async function probe() {
  let res;
  try {
    res = await fetch("/v1/models", { headers: headers(false), cache: "no-store" });
  } catch (e) {
    show_error("cannot reach the server: " + e.message);
    return;
  }
  if (res.status === 401) {
    ask_key(api_key() ? "the API key was refused" : "");
    return;
  }
  if (!res.ok) {
    show_error(await error_text(res));
    if (res.status === 503) {   // loading or draining: ask again when the server says
      const secs = Number(res.headers.get("Retry-After"));
      setTimeout(probe, 1000 * (secs >= 1 && secs <= 60 ? secs : 2));
    }
    return;
  }
  $("keybox").hidden = true;
  $("forget").hidden = !api_key();
  show_error("");
  const j = await res.json();
  if (j && Array.isArray(j.data) && j.data.length > 0) $("model").textContent = j.data[0].id;
}

function set_busy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

function number_in(id, lo, hi, fallback) {
  const v = Number($(id).value);
  return Number.isFinite(v) && v >= lo && v <= hi ? v : fallback;
}

// One SSE event's data: append a delta, note usage; returns true at [DONE].
function take_event(data, st) {
  if (data === "[DONE]") return true;
  const j = JSON.parse(data);
  if (j.error) throw new Error(j.error.message || "the server reported an error");
  if (j.usage && typeof j.usage.completion_tokens === "number") st.usage = j.usage.completion_tokens;
  const c = j.choices && j.choices[0];
  const piece = c && c.delta && typeof c.delta.content === "string" ? c.delta.content : "";
  if (piece) {
    if (st.t_first === 0) st.t_first = performance.now();
    st.t_last = performance.now();
    st.chunks++;
    st.text += piece;
    st.div.textContent = st.text;
  }
  return false;
}

function show_stats(st) {
  const n = st.usage >= 0 ? st.usage : st.chunks;
  const secs = (st.t_last - st.t_first) / 1000;
  // the first token's latency is the prompt's; the rate counts the tokens after it
  const rate = n > 1 && secs > 0 ? ((n - 1) / secs).toFixed(1) : "–";
  $("stats").textContent = n + " tokens, " + rate + " tokens/s";
}

async function send(text) {
  show_error("");
  messages.push({ role: "user", content: text });
  add_message("user", text);
  const system = $("system").value.trim();
  const body = {
    messages: (system ? [{ role: "system", content: system }] : []).concat(messages),
    stream: true,
    stream_options: { include_usage: true },
    temperature: number_in("temperature", 0, 2, 0.7),
    max_tokens: Math.round(number_in("max_tokens", 1, 1 << 20, 256)),
  };
  const st = { div: add_message("assistant", ""), text: "", chunks: 0, usage: -1, t_first: 0, t_last: 0 };
  controller = new AbortController();
  set_busy(true);
  $("stats").textContent = "…";
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(true), body: JSON.stringify(body),
      signal: controller.signal, cache: "no-store",
    });
    if (!res.ok) {
      const why = await error_text(res);
      if (res.status === 401) ask_key(why); else show_error(why);
      // the exchange did not happen: take it back, and give the text back for a retry
      st.div.remove();
      messages.pop();
      if ($("log").lastChild) $("log").lastChild.remove();
      $("input").value = text;
      $("stats").textContent = "";
      return;
    }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "", done = false;
    while (!done) {
      const r = await reader.read();
      if (r.done) break;
      buf += dec.decode(r.value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while (!done && (cut = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = ev.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (data) done = take_event(data, st);
      }
      show_stats(st);
    }
    if (!done) throw new Error("the stream ended without [DONE]");
    messages.push({ role: "assistant", content: st.text });
  } catch (e) {
    if (e.name === "AbortError") {
      st.div.classList.add("stopped");
      messages.push({ role: "assistant", content: st.text });
    } else {
      show_error(e.message);
    }
  } finally {
    if (st.t_first !== 0) show_stats(st);
    controller = null;
    set_busy(false);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("chat").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("input").value.trim();
    if (!text || controller) return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      $("chat").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => { if (controller) controller.abort(); });
  $("clear").addEventListener("click", () => {
    if (controller) controller.abort();
    messages.length = 0;
    $("log").replaceChildren();
    $("stats").textContent = "";
    show_error("");
  });
  $("keyform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
    $("key").value = "";
    probe();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    ask_key("");
  });
  probe();
});
