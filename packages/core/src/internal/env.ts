/**
 * Facts about the running environment that defaults depend on.
 *
 * @internal
 */

/** @internal Development and test runs default cookies to not Secure (plain http on localhost). */
export const isDevelopment = (): boolean => ["development", "test"].includes(process.env["NODE_ENV"] ?? "")
