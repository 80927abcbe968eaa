// How long a live value takes from its WebSocket message to the screen.
//
// Each update is stamped when its message arrives; the overview applies pending
// updates once per animation frame, and the frame's paint is taken to be done at
// the first task after it (a timeout queued from requestAnimationFrame runs after
// the frame was rendered). The lags of the last updates are kept for the figures.
const KEPT = 20000;

export const paintMeter = {
  received: 0, // updates that arrived
  shown: 0, // updates painted, or replaced by a newer value of their tag before their frame
  lagsMs: [],
  since: performance.now(), // when counting began

  /** A timestamp for an update that just arrived. */
  arrived() {
    this.received += 1;
    return performance.now();
  },

  /** The updates stamped ``stamps`` were applied in this frame; measure when it is painted. */
  applied(stamps) {
    setTimeout(() => {
      const painted = performance.now();
      for (const stamp of stamps) this.lagsMs.push(painted - stamp);
      this.shown += stamps.length;
      if (this.lagsMs.length > KEPT) this.lagsMs.splice(0, this.lagsMs.length - KEPT);
    }, 0);
  },

  reset() {
    this.since = performance.now();
    this.received = 0;
    this.shown = 0;
    this.lagsMs = [];
  },
};
