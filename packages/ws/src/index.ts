/**
 * Strata WebSocket channels: typed Schema protocol both ways, auth at the upgrade through the same
 * middleware as HTTP routes, topics with history and presence, request/response, and a client that
 * reconnects and resumes. `NodeTransport` and `PubSubRedis` are imported from their own paths.
 *
 * @since 0.1.0
 */
export * as Channel from "./Channel.ts"
export * as Client from "./Client.ts"
export * as Hub from "./Hub.ts"
export * as Protocol from "./Protocol.ts"
export * as PubSub from "./PubSub.ts"
export * as Transport from "./Transport.ts"
