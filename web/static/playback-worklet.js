// The agent's voice: a small jitter buffer in front of the speaker. Playing starts once
// `targetSamples` are buffered (and again after the buffer ran dry); "flush" drops
// everything buffered at once (the user barged in). Counters go to the page every 50 ms.
class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.targetSamples = options.processorOptions.targetSamples;
    this.chunks = [];
    this.offset = 0; // into chunks[0]
    this.buffered = 0;
    this.playing = false;
    this.played = 0;
    this.flushes = 0;
    this.flushed = 0;
    this.drained = 0;
    this.sinceReport = 0;
    this.port.onmessage = (event) => {
      const message = event.data;
      if (message.type === "audio") {
        this.chunks.push(message.samples);
        this.buffered += message.samples.length;
      } else if (message.type === "flush") {
        this.flushes += 1;
        this.flushed += this.buffered;
        this.chunks = [];
        this.offset = 0;
        this.buffered = 0;
        this.playing = false;
        this.report();
      }
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.buffered >= this.targetSamples) this.playing = true;
    let written = 0;
    while (this.playing && written < out.length && this.chunks.length) {
      const head = this.chunks[0];
      const take = Math.min(out.length - written, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + take), written);
      written += take;
      this.offset += take;
      if (this.offset === head.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    out.fill(0, written);
    this.played += written;
    this.buffered -= written;
    if (this.playing && this.buffered === 0) {
      this.playing = false; // ran dry (between replies, or late audio): rebuffer
      this.drained += 1;
    }
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 20) this.report();
    return true;
  }

  report() {
    this.sinceReport = 0;
    this.port.postMessage({
      played: this.played,
      buffered: this.buffered,
      flushes: this.flushes,
      flushed: this.flushed,
      drained: this.drained,
    });
  }
}

registerProcessor("playback", PlaybackProcessor);
