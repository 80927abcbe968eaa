// Trends: chosen tags over a time range, from the history query in buckets fitted to
// the chart's width (about one per pixel), with the live samples appended as they come.
import uPlot from "/vendor/uplot/uPlot.esm.js";
import { field, h, replace } from "./dom.js";

const HISTORY = `query($d: String!, $t: String!, $f: DateTime!, $to: DateTime!, $b: Int!, $n: Int!) {
  history(device: $d, tags: [$t], from: $f, to: $to, bucket: $b, aggregates: ["avg"], first: $n) {
    buckets { time avg } } }`;
const LIVE = `subscription($d: [String!]) { tagUpdates(devices: $d) { device tag value ts snapshot } }`;
const RANGES = [
  ["Last 15 min", 15 * 60],
  ["Last 1 h", 3600],
  ["Last 8 h", 8 * 3600],
  ["Last 24 h", 24 * 3600],
  ["Custom", 0],
];
// Buckets asked of one tag: each costs two fields against PLANTCORE_GRAPHQL_MAX_COST
// (5000 by default), and no chart is wider than this many pixels anyway.
const MAX_POINTS = 2000;
const COLOURS = ["#0b3d91", "#8a4b00", "#2e6b30", "#6a1b9a", "#00695c", "#4e342e"];

/** The bucket width in seconds giving about one bucket per pixel of the chart. */
export function bucketSeconds(spanSeconds, widthPx) {
  return Math.max(1, Math.ceil(spanSeconds / Math.min(widthPx, MAX_POINTS)));
}

export function mount(container, { session, plant, notify }) {
  const picks = plant.numericTags().map(({ device, tag }) => ({
    device: device.id,
    tag: tag.name,
    unit: tag.unit,
    box: h("input", { type: "checkbox", name: `${device.id}/${tag.name}` }),
  }));
  const range = h("select", { name: "range" }, RANGES.map(([label, seconds]) => h("option", { value: seconds }, label)));
  const from = h("input", { type: "datetime-local", name: "from" });
  const to = h("input", { type: "datetime-local", name: "to" });
  const custom = h("span", { class: "custom", hidden: true }, field("From", from), field("To", to));
  range.addEventListener("change", () => (custom.hidden = range.value !== "0"));
  const chartBox = h("div", { class: "chart", "aria-label": "Trend chart" });
  const form = h(
    "form",
    { class: "panel trend-controls", "aria-label": "Trend" },
    h("fieldset", {}, h("legend", {}, "Tags"), picks.map((pick) => field(`${pick.device} ${pick.tag}`, pick.box))),
    field("Range", range),
    custom,
    h("button", { type: "submit" }, "Show"),
  );
  replace(container, h("h1", { class: "screen-title" }, "Trends"), form, chartBox);

  let chart = null;
  let stopLive = () => {};
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    draw().catch((error) => notify(error.message));
  });

  async function draw() {
    const chosen = picks.filter((pick) => pick.box.checked);
    if (!chosen.length) return notify("Choose at least one tag.");
    notify("");
    const live = range.value !== "0";
    const end = live ? Date.now() : Date.parse(to.value);
    const span = live ? Number(range.value) : (end - Date.parse(from.value)) / 1000;
    if (!(span > 0)) return notify("The range must end after it starts.");
    const start = end - span * 1000;
    const width = Math.max(300, chartBox.clientWidth || 900);
    const bucket = bucketSeconds(span, width);
    const answers = await Promise.all(
      chosen.map((pick) =>
        session
          .query(HISTORY, {
            d: pick.device,
            t: pick.tag,
            f: new Date(start).toISOString(),
            to: new Date(end).toISOString(),
            b: bucket,
            n: Math.ceil(span / bucket) + 1,
          })
          .then((data) => data.history.buckets),
      ),
    );
    // uPlot wants one x axis: the union of the bucket times, each series null where it has none.
    const seriesIndex = new Map(chosen.map((pick, index) => [`${pick.device}/${pick.tag}`, index]));
    const byTime = new Map();
    answers.forEach((buckets, index) => {
      for (const row of buckets) {
        const x = Date.parse(row.time) / 1000;
        if (!byTime.has(x)) byTime.set(x, new Array(chosen.length).fill(null));
        byTime.get(x)[index] = row.avg;
      }
    });
    const xs = [...byTime.keys()].sort((a, b) => a - b);
    const data = [xs, ...chosen.map((_, index) => xs.map((x) => byTime.get(x)[index]))];
    chart?.destroy();
    stopLive();
    chart = new uPlot(
      {
        width,
        height: 360,
        scales: { x: { time: true } },
        series: [
          {},
          ...chosen.map((pick, index) => ({
            label: `${pick.device} ${pick.tag} ${pick.unit}`,
            stroke: COLOURS[index % COLOURS.length],
            width: 2,
            spanGaps: true,
          })),
        ],
      },
      data,
      chartBox,
    );
    chartBox.dataset.points = xs.length;
    if (live) stopLive = followLive(chosen, data, span, seriesIndex);
  }

  /** The live tail: each new sample appended, the oldest dropped as the window slides. */
  function followLive(chosen, data, span, seriesIndex) {
    let frame = 0;
    return session.socket.subscribe(LIVE, { d: [...new Set(chosen.map((pick) => pick.device))] }, {
      next: ({ data: message }) => {
        const update = message.tagUpdates;
        const index = seriesIndex.get(`${update.device}/${update.tag}`);
        if (index === undefined || update.snapshot || update.value === null) return;
        const x = Date.parse(update.ts) / 1000;
        const last = data[0].at(-1) ?? 0;
        if (x < last) return; // the history already holds it
        if (x === last) data[index + 1][data[0].length - 1] = update.value; // same poll, another tag
        else {
          data[0].push(x);
          data.forEach((series, position) => position > 0 && series.push(position === index + 1 ? update.value : null));
        }
        while (data[0].length && data[0][0] < x - span) data.forEach((series) => series.shift());
        frame ||= requestAnimationFrame(() => {
          frame = 0;
          chart.setData(data);
          chartBox.dataset.points = data[0].length;
        });
      },
    });
  }

  return () => {
    stopLive();
    chart?.destroy();
  };
}
