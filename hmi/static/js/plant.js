// The plant as the API describes it: devices by area, and each device's tags.
const DEVICES = `{ devices { id area
  status { state ts detail reconnects }
  tags { name value boolValue quality qualityReason unit ts valueTimestamp writable kind low high critical emergencyValues } } }`;

export class Plant {
  constructor(devices) {
    this.devices = devices;
  }

  static async load(session) {
    return new Plant((await session.query(DEVICES)).devices);
  }

  /** [area, devices] in the order of the plant file. */
  get areas() {
    const areas = new Map();
    for (const device of this.devices) {
      if (!areas.has(device.area)) areas.set(device.area, []);
      areas.get(device.area).push(device);
    }
    return [...areas];
  }

  device(id) {
    return this.devices.find((device) => device.id === id);
  }

  /** Tags whose history is a number (what a trend can draw). */
  numericTags() {
    return this.devices.flatMap((device) =>
      device.tags.filter((tag) => tag.kind !== "bool").map((tag) => ({ device, tag })),
    );
  }
}
