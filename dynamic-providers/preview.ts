/**
 * Preview-time values in dynamic providers: an input that depends on a resource not created yet
 * reaches `check` and `diff` as this sentinel string, never as its real type.
 */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export const isUnknown = (v: unknown): boolean => v === UNKNOWN;
