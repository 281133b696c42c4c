/**
 * Strata webhooks: a signed, durable, retrying dispatcher and a verifying receiver middleware, with
 * one event catalog shared by both sides.
 *
 * @since 0.1.0
 */
export * as Catalog from "./Catalog.ts"
export * as Dispatcher from "./Dispatcher.ts"
export * as Endpoint from "./Endpoint.ts"
export * as Outbox from "./Outbox.ts"
export * as Receiver from "./Receiver.ts"
export * as Retry from "./Retry.ts"
export * as Signature from "./Signature.ts"
export * as Ssrf from "./Ssrf.ts"
