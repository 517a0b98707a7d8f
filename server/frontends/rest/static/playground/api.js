// The public REST API as the page uses it: JSON calls with the bearer token, the error
// body's field, and a job's Server-Sent Events read from a fetch() stream (EventSource
// cannot send an Authorization header).

const TOKEN_KEY = "latentserve.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refusal from the server: its HTTP status and the error body's code, message, field. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

// Seeds are 64-bit integers: beyond 2**53 a JavaScript number would round them, and a
// rounded seed reproduces nothing. They travel as BigInt here and as plain JSON numbers on
// the wire.
const SEED_KEYS = "seed|seed_a|seed_b|mix_seed";
const SEED_NUMBER = new RegExp(`"(${SEED_KEYS})"\\s*:\\s*(\\d+)`, "g");

/** JSON text -> value, with seeds kept exact (as BigInt). */
export function parseJson(text) {
  const quoted = text.replace(SEED_NUMBER, '"$1":"\\u0000$2"');
  return JSON.parse(quoted, (key, value) =>
    typeof value === "string" && value.startsWith("\u0000") ? BigInt(value.slice(1)) : value,
  );
}

/** Value -> JSON text, BigInts written as plain numbers. */
export function toJson(value) {
  const text = JSON.stringify(value, (key, v) => (typeof v === "bigint" ? `\u0000${v}` : v));
  return text.replace(/"\\u0000(\d+)"/g, "$1");
}

function headers(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

// Paths are relative to the page, so the playground also works behind a path prefix.
function url(path) {
  return path.replace(/^\//, "");
}

async function refusal(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && body.error;
  if (error) return new ApiError(response.status, error.code, error.message, error.field);
  return new ApiError(response.status, "http_" + response.status, response.statusText, null);
}

/** ``method`` ``path`` with an optional JSON body; the parsed answer or an ApiError. */
export async function call(method, path, body, { signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = toJson(body);
  }
  const response = await fetch(url(path), init);
  if (!response.ok) throw await refusal(response);
  return parseJson(await response.text());
}

/** Parse a text/event-stream into {event, data, id} objects (comments skipped). */
async function* serverSentEvents(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { event: "message", data: "", id: null };
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") data.push(text);
        else if (name === "event") event.event = text;
        else if (name === "id") event.id = text;
      }
      if (data.length) {
        event.data = parseJson(data.join("\n"));
        yield event;
      }
    }
  }
}

/** The events of job ``jobId`` until it ends (``result`` or ``error``). */
export async function* jobEvents(jobId, { signal } = {}) {
  const response = await fetch(url(`/v1/jobs/${encodeURIComponent(jobId)}/events`), {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
  });
  if (!response.ok) throw await refusal(response);
  yield* serverSentEvents(response.body);
}

/** The API's description: the bounds of every method's parameters. */
export async function openapi() {
  const response = await fetch(url("/openapi.json"));
  if (!response.ok) throw await refusal(response);
  return response.json();
}
