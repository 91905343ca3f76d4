// The console's chat: a turn is a POST whose answer is the SSE stream of
// POST /v1/conversations/{id}/messages. EventSource only does GET, so the stream
// is read with fetch; tokens are shown as they come, then the transcript (stored
// messages, pending approvals) is swapped in by htmx.
"use strict";

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

function problemText(status, html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  const detail = doc.querySelector(".detail");
  return "Error " + status + ": " + (detail ? detail.textContent : "the request failed");
}

async function streamTurn(url, body) {
  const box = document.getElementById("chat");
  const live = document.getElementById("live");
  const status = document.getElementById("turn-status");
  live.textContent = "";
  live.hidden = false;
  status.textContent = "Streaming…";
  let tokens = 0;
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "Accept": "text/event-stream",
      "Content-Type": "application/json",
      "X-CSRF-Token": csrfToken(),
    },
    body: body === null ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!response.ok) {
    status.textContent = problemText(response.status, await response.text());
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let outcome = "Turn complete";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) type = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (!data.length) continue; // a keep-alive comment
      const event = JSON.parse(data.join("\n"));
      if (type === "token") {
        tokens += 1;
        live.textContent += event.text;
      } else if (type === "tool_call") {
        live.textContent += "\n→ " + event.name + " " + JSON.stringify(event.args) + "\n";
      } else if (type === "interrupt") {
        outcome = "Waiting for your decision";
      } else if (type === "error") {
        outcome = "Error " + event.status + ": " + event.detail;
      }
    }
  }
  status.textContent = outcome + " (" + tokens + " tokens streamed)";
  status.dataset.tokens = String(tokens);
  await htmx.ajax("GET", box.dataset.transcript, { target: "#transcript", swap: "innerHTML" });
  live.hidden = true;
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.matches("[data-turn]")) return;
  event.preventDefault();
  const box = document.getElementById("chat");
  let body = null;
  if (form.dataset.turn === "message") {
    const input = form.querySelector("textarea");
    body = { content: input.value };
    input.value = "";
    streamTurn(box.dataset.turnUrl, body);
  } else {
    const reason = form.querySelector("[name=reason]");
    if (form.dataset.turn === "accept") body = { decision: { type: "accept" } };
    else if (form.dataset.turn === "reject")
      body = { decision: reason && reason.value ? { type: "response", args: reason.value } : { type: "ignore" } };
    streamTurn(box.dataset.resumeUrl, body);
  }
});
