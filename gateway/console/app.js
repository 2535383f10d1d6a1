// The meeting-mesh web console: plain DOM and the gateway's HTTP API, no dependencies.
// The token lives in sessionStorage and travels only in `Authorization` headers and, on the
// live WebSocket (which a browser opens without headers), in its first frame.

const TOKEN_KEY = "meeting-mesh.token";
const TERMINAL = new Set(["MEETING_STATUS_COMPLETED", "MEETING_STATUS_FAILED"]);
// The rate the live socket is sent at, most microphones' own: the AudioContext resamples
// any other to it, meeting_service resamples it to what the recognizer takes.
const LIVE_SAMPLE_RATE = 48000;
const LIVE_RESUMES = 5;
const UPLOAD_ATTEMPTS = 6;
const $ = (id) => document.getElementById(id);

let token = null;
const meetings = new Map();        // meeting id -> Meeting JSON
let current = null;                // the meeting shown: {id, segments, speakers, stream}
let feed = null;                   // AbortController of the per-user stream
let live = null;                   // the recording: {ws, context, stream, worklet}

class ApiError extends Error {
  constructor(code, status, message) {
    super(`${code} ${status}: ${message}`);
    this.code = code;
  }
}

// ---- errors on screen ----

function showError(error) {
  $("error-text").textContent = error instanceof Error ? error.message : String(error);
  $("error").hidden = false;
  if (error instanceof ApiError && error.code === 401) signOut(false);
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

// Runs an action from a click or a form, putting any failure on screen.
function guarded(action) {
  return async (event) => {
    event?.preventDefault?.();
    try {
      await action(event);
    } catch (error) {
      showError(error);
    }
  };
}

async function errorOf(response) {
  try {
    const { error } = await response.json();
    return new ApiError(error.code, error.status, error.message);
  } catch {
    return new ApiError(response.status, response.statusText || "ERROR", "the gateway gave no error body");
  }
}

// ---- the API ----

function authorization() {
  return { Authorization: `Bearer ${token}` };
}

async function request(method, path, { body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...authorization(), ...headers }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiError(0, "UNAVAILABLE", `the gateway cannot be reached (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function api(method, path, body) {
  const response = await request(method, path, { body });
  return response.status === 204 ? {} : response.json();
}

// Follows a Server-Sent Events stream with fetch, so the token goes in a header, never in a
// URL. Reconnects with Last-Event-ID after a drop; ends when `onEvent` returns false, when
// the server answers 204 (the stream is over for good) or when `signal` aborts.
async function follow(path, onEvent, signal) {
  let last = "";
  for (let failures = 0; !signal.aborted; ) {
    const headers = { Accept: "text/event-stream" };
    if (last) headers["Last-Event-ID"] = last;
    let response;
    try {
      response = await request("GET", path, { headers, signal });
    } catch (error) {
      if (signal.aborted) return;
      if (!(error instanceof ApiError) || error.code !== 0 || ++failures > 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** failures));
      continue;
    }
    if (response.status === 204) return;
    failures = 0;
    try {
      for await (const event of sseEvents(response.body)) {
        if (event.id) last = event.id;
        if (onEvent(event.name, event.data) === false) return;
      }
    } catch (error) {
      if (signal.aborted) return;  // a cut connection: reconnect and resume
    }
  }
}

async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { id: "", name: "message", data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") event.id = text;
        else if (field === "event") event.name = text;
        else if (field === "data") event.data.push(text);
      }
      if (event.data.length) yield { ...event, data: JSON.parse(event.data.join("\n")) };
    }
  }
}

// ---- signing in ----

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has("token")) return;
  sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}

async function signIn() {
  token = sessionStorage.getItem(TOKEN_KEY);
  $("sign-in").hidden = token !== null;
  if (token === null) return;
  const page = await api("GET", "/v1/meetings?pageSize=100");
  $("app").hidden = false;
  $("sign-out").hidden = false;
  meetings.clear();
  for (const meeting of page.meetings ?? []) meetings.set(meeting.id, meeting);
  renderList();
  followFeed();
}

function signOut(clearTheError = true) {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  feed?.abort();
  current?.stream.abort();
  stopRecording();
  current = null;
  $("app").hidden = true;
  $("meeting").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  if (clearTheError) clearError();
}

// ---- the list of meetings ----

// One connection for every meeting's status: the per-user stream, where the gateway has it.
async function followFeed() {
  feed?.abort();
  feed = new AbortController();
  try {
    await follow("/v1/events", (name, data) => {
      if (name === "meeting") putMeeting(data.meeting);
      else if (name === "deleted") dropMeeting(data.meetingId);
      else if (name === "stream_error" || name === "error") throw new ApiError(data.error.code, data.error.status, data.error.message);
      return true;
    }, feed.signal);
  } catch (error) {
    if (error instanceof ApiError && error.code === 404) {
      $("feed-state").textContent = "Statuses update for the open meeting only (this gateway has no /v1/events).";
    } else {
      showError(error);
    }
  }
}

function putMeeting(meeting) {
  meetings.set(meeting.id, { ...meetings.get(meeting.id), ...meeting });
  renderList();
  if (current?.id === meeting.id) renderMeeting();
}

function dropMeeting(id) {
  meetings.delete(id);
  renderList();
  if (current?.id === id) closeMeeting();
}

function statusLabel(status) {
  return (status ?? "MEETING_STATUS_UNSPECIFIED").replace("MEETING_STATUS_", "").replace("_", " ").toLowerCase();
}

function statusBadge(element, status) {
  element.textContent = statusLabel(status);
  element.className = `status ${statusLabel(status).replace(" ", "-")}`;
}

function renderList() {
  const sorted = [...meetings.values()].sort((a, b) => (b.createTime ?? "").localeCompare(a.createTime ?? ""));
  $("meetings").replaceChildren(...sorted.map((meeting) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.id = meeting.id;
    button.setAttribute("aria-current", String(meeting.id === current?.id));
    const title = document.createElement("span");
    title.textContent = meeting.title || "(untitled)";
    const badge = document.createElement("span");
    statusBadge(badge, meeting.status);
    button.append(title, badge);
    button.addEventListener("click", guarded(() => openMeeting(meeting.id)));
    const item = document.createElement("li");
    item.append(button);
    return item;
  }));
}

// ---- one meeting ----

function openMeeting(id) {
  current?.stream.abort();
  stopRecording();
  current = { id, segments: new Map(), speakers: [], summary: null, stream: new AbortController() };
  $("meeting").hidden = false;
  $("rename-title").value = meetings.get(id)?.title ?? "";
  $("upload-progress").hidden = true;
  $("upload-state").textContent = "";
  $("live-state").textContent = "";
  renderMeeting();
  renderTranscript();
  renderSummary();
  renderList();
  followMeeting(current);
}

function closeMeeting() {
  current?.stream.abort();
  stopRecording();
  current = null;
  $("meeting").hidden = true;
  renderList();
}

// Replays the meeting's events from its first (segments, statuses, summary) and follows
// them until the meeting is COMPLETED, FAILED or deleted.
async function followMeeting(shown) {
  try {
    await follow(`/v1/meetings/${shown.id}/events`, (name, data) => {
      if (current !== shown) return false;
      return applyEvent(name, data);
    }, shown.stream.signal);
  } catch (error) {
    if (current === shown) showError(error);
  }
}

// Applies one transcript event (from SSE or the live socket); false once nothing follows.
function applyEvent(name, data) {
  if (name === "segment") {
    const segment = data.segment;
    current.segments.set(segment.segmentId || `#${segment.index}`, segment);
    renderTranscript();
  } else if (name === "status") {
    const { status, reason } = data.statusChange;
    putMeeting({ ...meetings.get(current.id), id: current.id, status, failureReason: reason ?? "" });
    return !TERMINAL.has(status);
  } else if (name === "summary") {
    current.summary = data.summary;
    renderSummary();
  } else if (name === "deleted") {
    dropMeeting(current.id);
    return false;
  } else if (name === "stream_error" || name === "error") {
    throw new ApiError(data.error.code, data.error.status, data.error.message);
  }
  return true;
}

function renderMeeting() {
  const meeting = meetings.get(current.id) ?? { id: current.id };
  $("meeting-title").textContent = meeting.title || "(untitled)";
  statusBadge($("meeting-status"), meeting.status);
  $("meeting-failure").hidden = !meeting.failureReason;
  $("meeting-failure").textContent = meeting.failureReason ? `Failed: ${meeting.failureReason}` : "";
  const awaiting = meeting.status === "MEETING_STATUS_AWAITING_AUDIO";
  $("record").disabled = live !== null;
  $("file").disabled = !awaiting;
  $("file-label").hidden = !awaiting;
}

function seconds(duration) {
  return Number.parseFloat(duration ?? "0") || 0;
}

function clock(duration) {
  const total = Math.floor(seconds(duration));
  const pad = (n) => String(n).padStart(2, "0");
  const hours = Math.floor(total / 3600);
  return `${hours ? `${hours}:` : ""}${pad(Math.floor(total / 60) % 60)}:${pad(total % 60)}`;
}

function speakerClass(speaker) {
  if (!current.speakers.includes(speaker)) current.speakers.push(speaker);
  return `speaker speaker-${current.speakers.indexOf(speaker) % 8}`;
}

function renderTranscript() {
  const segments = [...current.segments.values()].sort(
    (a, b) => seconds(a.startOffset) - seconds(b.startOffset) || (a.index ?? 0) - (b.index ?? 0));
  $("transcript").replaceChildren(...segments.map((segment) => {
    const item = document.createElement("li");
    item.className = segment.final ? "final" : "partial";
    const time = document.createElement("time");
    time.textContent = clock(segment.startOffset);
    const speaker = document.createElement("span");
    speaker.textContent = segment.speaker || "—";
    speaker.className = segment.speaker ? speakerClass(segment.speaker) : "speaker";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = segment.text + (segment.final ? "" : " …");
    item.append(time, speaker, text);
    return item;
  }));
  $("transcript-empty").hidden = segments.length > 0;
}

function renderSummary() {
  const summary = current.summary;
  $("summary-text").textContent = summary?.text || "No summary yet.";
  $("summary-text").className = summary ? "" : "hint";
  $("action-items").replaceChildren(...(summary?.actionItems ?? []).map((action) => {
    const item = document.createElement("li");
    const who = [action.owner, action.due && `due ${action.due}`].filter(Boolean).join(", ");
    item.textContent = who ? `${action.text} (${who})` : action.text;
    return item;
  }));
  $("no-action-items").hidden = (summary?.actionItems ?? []).length > 0;
  const keywords = summary?.keywords ?? [];
  $("keywords").textContent = keywords.length ? `Keywords: ${keywords.join(", ")}` : "";
}

// ---- actions ----

async function createMeeting() {
  const { meeting } = await api("POST", "/v1/meetings", { title: $("new-title").value });
  $("new-title").value = "";
  putMeeting(meeting);
  openMeeting(meeting.id);
}

async function renameMeeting() {
  const id = current.id;
  const { meeting } = await api("PATCH", `/v1/meetings/${id}?updateMask=title`, { title: $("rename-title").value });
  putMeeting(meeting);
}

async function deleteMeeting() {
  const meeting = meetings.get(current.id);
  if (!confirm(`Delete “${meeting?.title || "(untitled)"}” with its recording and transcript?`)) return;
  const id = current.id;
  await api("DELETE", `/v1/meetings/${id}`);
  dropMeeting(id);
}

async function exportTranscript(event) {
  const format = event.target.dataset.format;
  const response = await request("GET", `/v1/meetings/${current.id}/transcript?format=${format}`);
  const name = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") ?? "")?.[1];
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name ?? `transcript.${format}`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

// ---- uploads: PUT, then after a drop HEAD for the stored size and PATCH the rest ----

function send(method, path, body, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    for (const [name, value] of Object.entries({ ...authorization(), ...headers })) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => resolve(new Response(xhr.status === 204 ? null : xhr.response, {
      status: xhr.status,
      headers: { "Upload-Offset": xhr.getResponseHeader("Upload-Offset") ?? "" },
    }));
    xhr.onerror = () => reject(new ApiError(0, "UNAVAILABLE", "the connection dropped"));
    xhr.send(body);
  });
}

async function storedOffset(id) {
  const response = await request("HEAD", `/v1/meetings/${id}/audio`);
  return Number(response.headers.get("Upload-Offset") ?? 0);
}

async function uploadFile() {
  const file = $("file").files[0];
  if (!file) return;
  const id = current.id;
  const bar = $("upload-progress");
  const state = $("upload-state");
  const progress = (bytes) => {
    bar.value = file.size ? bytes / file.size : 1;
    state.textContent = `${Math.round(100 * bar.value)} % of ${file.name}`;
  };
  bar.hidden = false;
  $("file").disabled = true;
  let offset = 0;
  try {
    for (let attempt = 1; ; attempt++) {
      const headers = offset
        ? { "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(offset), "Upload-Length": String(file.size) }
        : { "Content-Type": file.type || "application/octet-stream" };
      let response;
      try {
        response = await send(offset ? "PATCH" : "PUT", `/v1/meetings/${id}/audio`, file.slice(offset), headers,
          (sent) => progress(offset + sent));
      } catch (dropped) {
        if (attempt >= UPLOAD_ATTEMPTS) throw dropped;
        state.textContent = `Connection dropped; resuming (attempt ${attempt + 1})…`;
        await new Promise((resolve) => setTimeout(resolve, 300 * 2 ** attempt));
        offset = await storedOffset(id);
        progress(offset);
        continue;
      }
      if (response.status === 409 && attempt < UPLOAD_ATTEMPTS) {
        offset = Number(response.headers.get("Upload-Offset"));  // the stored size moved on
        continue;
      }
      if (!response.ok) throw await errorOf(response);
      progress(file.size);
      state.textContent = `Uploaded ${file.name}.`;
      return;
    }
  } finally {
    $("file").value = "";
    if (current?.id === id) renderMeeting();
  }
}

// ---- live recording: microphone -> AudioWorklet (16-bit PCM) -> WebSocket ----
// A socket that drops (no close code of a refusal) is opened again with `resume=true`
// within the server's grace period; the meeting stays LIVE meanwhile (docs/live.md).

function openLiveSocket(shown, resume) {
  const url = new URL(`/v1/meetings/${shown.id}/live`, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("sample_rate", String(live.context.sampleRate));
  if (resume) url.searchParams.set("resume", "true");
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  live.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "auth", token }));
    live.drops = 0;
    $("live-state").textContent = "Recording…";
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.error) return;  // the reason arrives again as the close frame
    if (current === shown) applyEvent(message.event, message);
  };
  ws.onclose = (event) => {
    const dropped = event.code === 1006 || event.code === 1001;
    if (dropped && !live.ending && live.drops < LIVE_RESUMES) {
      live.drops += 1;
      $("live-state").textContent = `Connection lost; resuming (attempt ${live.drops})…`;
      setTimeout(() => live && openLiveSocket(shown, true), 250 * 2 ** live.drops);
      return;
    }
    releaseMicrophone();
    if (event.code === 1000) {
      $("live-state").textContent = "Recording ended.";
    } else {
      $("live-state").textContent = `Live socket closed (${event.code}).`;
      showError(new Error(`Live socket closed with code ${event.code}: ${event.reason || "no reason given"}`));
    }
  };
}

async function startRecording() {
  const shown = current;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  const context = new AudioContext({ sampleRate: LIVE_SAMPLE_RATE });
  await context.audioWorklet.addModule("/console/pcm-worklet.js");
  const worklet = new AudioWorkletNode(context, "pcm-capture", { channelCount: 1, channelCountMode: "explicit" });
  live = { ws: null, context, stream, worklet, drops: 0, ending: false };
  $("record").hidden = true;
  $("stop").hidden = false;
  $("live-state").textContent = "Connecting…";
  // Audio captured while no socket is open is not sent: a resumed socket goes on from
  // the audio the server stored.
  worklet.port.onmessage = (event) => {
    if (live.ws.readyState !== WebSocket.OPEN) return;
    live.ws.send(event.data === "flushed" ? JSON.stringify({ type: "end" }) : event.data);
  };
  openLiveSocket(shown, false);
  context.createMediaStreamSource(stream).connect(worklet);
  worklet.connect(context.destination);  // silent: the worklet writes no output
}

function endRecording() {
  if (!live) return;
  live.ending = true;
  $("live-state").textContent = "Finishing…";
  $("stop").disabled = true;
  live.worklet.port.postMessage("flush");
}

function releaseMicrophone() {
  if (!live) return;
  for (const track of live.stream.getTracks()) track.stop();
  live.context.close();
  live = null;
  $("record").hidden = false;
  $("stop").hidden = true;
  $("stop").disabled = false;
  if (current) renderMeeting();
}

// Ends the recording at once (another meeting opened, signed out): what was sent is kept.
function stopRecording() {
  if (!live) return;
  live.ws.onclose = null;
  if (live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "end" }));
  live.ws.close(1000);
  releaseMicrophone();
}

// ---- wiring ----

$("sign-in-form").addEventListener("submit", guarded(async () => {
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  clearError();
  await signIn();
}));
$("sign-out").addEventListener("click", () => signOut());
$("error-dismiss").addEventListener("click", clearError);
$("create-form").addEventListener("submit", guarded(createMeeting));
$("rename-form").addEventListener("submit", guarded(renameMeeting));
$("delete").addEventListener("click", guarded(deleteMeeting));
$("file").addEventListener("change", guarded(uploadFile));
$("record").addEventListener("click", guarded(startRecording));
$("stop").addEventListener("click", endRecording);
for (const button of document.querySelectorAll("[data-format]")) button.addEventListener("click", guarded(exportTranscript));

takeTokenFromFragment();
guarded(signIn)();
