// The page's side of the browser socket (README: "Talk to it in a browser"). Binary
// messages: a 12-byte header (kind, version, reserved, sample rate, sequence; little
// endian) and a payload; JSON messages for everything else.
"use strict";

const HEADER_BYTES = 12;
const AUDIO = 1;
const VIDEO = 2;
const VERSION = 1;
const OUTPUT_RATE = 24000;
const FRAME_MS = 20;
const JITTER_TARGET_MS = 60; // buffered before the agent's voice starts (network jitter)
const CAMERA_INTERVAL_MS = 1000;
const CAMERA_QUALITY = 0.7;

// Counters the tests read (and a person can, in the console).
const stats = (window.stats = {
  state: "idle",
  backend: null,
  micRate: null,
  sentFrames: 0,
  sentSamples: 0,
  receivedSamples: 0,
  playedSamples: 0,
  bufferedSamples: 0,
  flushes: 0,
  flushedSamples: 0,
  interruptions: 0,
  ttfa: null,
  transcripts: [],
  toolCalls: [],
  toolResults: [],
  playouts: [],
  videoFrames: 0,
  level: 0,
  closeCode: null,
  closeReason: null,
});

const $ = (id) => document.getElementById(id);
let socket = null;
let player = null;
let playContext = null;
let captureContext = null;
let microphone = null;
let camera = null;
let cameraTimer = null;
let audioSequence = 0;
let videoSequence = 0;

function header(kind, rate, sequence) {
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, kind);
  view.setUint8(1, VERSION);
  view.setUint16(2, 0, true);
  view.setUint32(4, rate, true);
  view.setUint32(8, sequence >>> 0, true);
  return bytes;
}

function framed(kind, rate, sequence, payload) {
  const message = new Uint8Array(HEADER_BYTES + payload.byteLength);
  message.set(header(kind, rate, sequence), 0);
  message.set(new Uint8Array(payload), HEADER_BYTES);
  return message.buffer;
}

function setStatus(text) {
  stats.state = text;
  $("status").textContent = text;
}

function seconds(samples, rate) {
  return `${(samples / rate).toFixed(1)} s`;
}

// --- start and stop --------------------------------------------------------------------

async function start() {
  $("start").disabled = true;
  setStatus("connecting");
  // The agent's voice: its own context at the model's rate (no resampling here).
  playContext = new AudioContext({ sampleRate: OUTPUT_RATE, latencyHint: "interactive" });
  await playContext.audioWorklet.addModule("/static/playback-worklet.js");
  player = new AudioWorkletNode(playContext, "playback", {
    outputChannelCount: [1],
    processorOptions: { targetSamples: (OUTPUT_RATE * JITTER_TARGET_MS) / 1000 },
  });
  player.connect(playContext.destination);
  player.port.onmessage = (event) => {
    const report = event.data;
    stats.playedSamples = report.played;
    stats.bufferedSamples = report.buffered;
    stats.flushes = report.flushes;
    stats.flushedSamples = report.flushed;
    $("played").textContent = seconds(report.played, OUTPUT_RATE);
  };
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/ws`);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (event) => receive(event.data);
  socket.onclose = (event) => closed(event.code, event.reason);
  socket.onerror = () => setStatus("connection failed");
  $("stop").disabled = false;
}

function closed(code, reason) {
  stats.closeCode = code;
  stats.closeReason = reason;
  setStatus(`closed (${code}${reason ? ": " + reason : ""})`);
  release();
}

function stop() {
  if (socket) socket.close(1000, "the user stopped");
  release();
}

function release() {
  if (cameraTimer) clearInterval(cameraTimer);
  for (const stream of [microphone, camera]) if (stream) stream.getTracks().forEach((t) => t.stop());
  microphone = camera = cameraTimer = null;
  for (const context of [captureContext, playContext]) if (context) context.close();
  captureContext = playContext = player = null;
  for (const id of ["stop", "camera", "interrupt", "text", "send"]) $(id).disabled = true;
  $("start").disabled = false;
  $("preview").style.display = "none";
}

async function startMicrophone(rates) {
  microphone = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  });
  captureContext = new AudioContext({ latencyHint: "interactive" });
  if (!rates.includes(captureContext.sampleRate)) {
    captureContext.close();
    captureContext = new AudioContext({ sampleRate: 48000, latencyHint: "interactive" });
  }
  const rate = captureContext.sampleRate;
  stats.micRate = rate;
  $("rate").textContent = `${rate} Hz`;
  await captureContext.audioWorklet.addModule("/static/capture-worklet.js");
  const capture = new AudioWorkletNode(captureContext, "capture", {
    processorOptions: { frameSamples: Math.round((rate * FRAME_MS) / 1000) },
  });
  capture.port.onmessage = (event) => {
    const { pcm, rms } = event.data;
    const level = Math.max(0, 1 + Math.log10(Math.max(rms, 1e-6)) / 3); // -60 dBFS..0
    stats.level = level;
    $("level").style.width = `${Math.round(level * 100)}%`;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(framed(AUDIO, rate, audioSequence++, pcm));
      stats.sentFrames += 1;
      stats.sentSamples += pcm.byteLength / 2;
      $("sent").textContent = seconds(stats.sentSamples, rate);
    }
  };
  captureContext.createMediaStreamSource(microphone).connect(capture);
  // Pulled by the graph only when connected to it: a silent path to the speaker.
  const silent = captureContext.createGain();
  silent.gain.value = 0;
  capture.connect(silent).connect(captureContext.destination);
}

// --- what the server says --------------------------------------------------------------

function receive(data) {
  if (data instanceof ArrayBuffer) {
    const view = new DataView(data);
    if (data.byteLength < HEADER_BYTES || view.getUint8(0) !== AUDIO) return;
    const pcm = new Int16Array(data.slice(HEADER_BYTES));
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
    stats.receivedSamples += samples.length;
    if (player) player.port.postMessage({ type: "audio", samples }, [samples.buffer]);
    return;
  }
  const message = JSON.parse(data);
  const handler = handlers[message.type];
  if (handler) handler(message);
}

const handlers = {
  ready(message) {
    stats.backend = message.backend || "gemini";
    $("backend").textContent = stats.backend;
    setStatus("live: speak, or type below");
    for (const id of ["camera", "interrupt", "text", "send"]) $(id).disabled = false;
    startMicrophone(message.input_rates).catch((error) => {
      setStatus(`no microphone (${error.name}): type below`);
    });
  },
  transcript(message) {
    stats.transcripts.push(message);
    line(message.role, message.turn_id, message.text, message.final, message.interrupted);
  },
  tool_call(message) {
    stats.toolCalls.push(message);
    toolLine(`${message.name}(${JSON.stringify(message.args)})`);
  },
  tool_result(message) {
    stats.toolResults.push(message);
    const outcome = "error" in message ? { error: message.error } : message.result;
    toolLine(`→ ${JSON.stringify(outcome)}`);
  },
  interrupted() {
    stats.interruptions += 1;
    $("interruptions").textContent = String(stats.interruptions);
    if (player) player.port.postMessage({ type: "flush" });
  },
  playout_finished(message) {
    stats.playouts.push(message);
  },
  metric(message) {
    if (message.name === "time_to_first_audio") {
      stats.ttfa = message.value;
      $("ttfa").textContent = `${Math.round(message.value * 1000)} ms`;
    }
  },
  error(message) {
    setStatus(`error: ${message.message}`);
  },
};

let typedPending = null; // a typed turn the server may echo as the user's transcript

function line(role, turnId, text, final, interrupted) {
  if (role === "user" && typedPending !== null && text === typedPending) {
    if (final) typedPending = null;
    return; // already shown as typed
  }
  const key = `${role}-${turnId}`;
  let element = document.querySelector(`[data-key="${key}"]`);
  if (!element) {
    element = document.createElement("div");
    element.dataset.key = key;
    element.className = `line ${role}`;
    element.innerHTML = `<span class="who"></span><span class="text"></span><span class="note"></span>`;
    element.querySelector(".who").textContent = role === "user" ? "you" : "agent";
    $("transcript").appendChild(element);
  }
  element.classList.toggle("interim", !final);
  element.querySelector(".text").textContent = text;
  const notes = [];
  if (interrupted) notes.push("[interrupted]");
  // The emulator does not hear: its "transcript" of the user is its script.
  if (role === "user" && final && stats.backend === "emulator") notes.push("[the emulator's script]");
  element.querySelector(".note").textContent = notes.join(" ");
  $("transcript").scrollTop = $("transcript").scrollHeight;
}

function typedLine(text) {
  const element = document.createElement("div");
  element.className = "line user";
  element.innerHTML = `<span class="who">you (typed)</span><span class="text"></span>`;
  element.querySelector(".text").textContent = text;
  $("transcript").appendChild(element);
}

function toolLine(text) {
  const element = document.createElement("div");
  element.textContent = text;
  $("tools").appendChild(element);
}

// --- what the user does ----------------------------------------------------------------

async function toggleCamera() {
  if (camera) {
    clearInterval(cameraTimer);
    camera.getTracks().forEach((t) => t.stop());
    camera = cameraTimer = null;
    $("preview").style.display = "none";
    $("camera").textContent = "Camera on";
    return;
  }
  camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  const preview = $("preview");
  preview.srcObject = camera;
  preview.style.display = "block";
  $("camera").textContent = "Camera off";
  const canvas = document.createElement("canvas");
  cameraTimer = setInterval(() => {
    if (!preview.videoWidth || !socket || socket.readyState !== WebSocket.OPEN) return;
    canvas.width = preview.videoWidth;
    canvas.height = preview.videoHeight;
    canvas.getContext("2d").drawImage(preview, 0, 0);
    canvas.toBlob(async (blob) => {
      if (!blob || !socket || socket.readyState !== WebSocket.OPEN) return;
      socket.send(framed(VIDEO, 0, videoSequence++, await blob.arrayBuffer()));
      stats.videoFrames += 1;
    }, "image/jpeg", CAMERA_QUALITY);
  }, CAMERA_INTERVAL_MS);
}

function sendText(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: "text", text }));
  typedPending = text;
  typedLine(text);
  $("text").value = "";
}

$("start").onclick = () => start().catch((error) => setStatus(`could not start: ${error}`));
$("stop").onclick = stop;
$("camera").onclick = () => toggleCamera().catch((error) => setStatus(`no camera (${error.name})`));
$("interrupt").onclick = () => {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: "interrupt" }));
  if (player) player.port.postMessage({ type: "flush" }); // the server stops its playout; this, ours
};
$("typed").onsubmit = sendText;
