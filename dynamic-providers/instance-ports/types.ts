export interface InstancePortsInputs {
  /** The host the instances run on (a shared Redis host's server name). */
  host: string;
  /** The instances on the host now. */
  names: string[];
  /** The range ports come from, inclusive. */
  firstPort: number;
  lastPort: number;
}

export interface InstancePortsOutputs extends InstancePortsInputs {
  /** Each instance's port: given once, kept for the instance's life. */
  ports: Record<string, number>;
}
