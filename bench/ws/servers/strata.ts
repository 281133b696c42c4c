/**
 * The Strata server: a channel whose client sends `Echo` (answered with `Echoed`) and `Publish`
 * (published to the `feed` topic, which subscribers join), written the way a user would, served by
 * `App.serve` on @effect/platform-node with the in-memory hub and the default connection settings
 * (heartbeats, bounded outbound queues, topic history).
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { App, Router } from "@strata/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as HttpServer from "effect/http/HttpServer"
import { createServer } from "node:http"
import { Channel, Hub } from "../../../packages/ws/src/index.ts"
import { HOST, serveControl } from "../shared.ts"

const bench = Channel.make({
  name: "bench",
  client: Schema.Union([
    Schema.TaggedStruct("Echo", { text: Schema.String }),
    Schema.TaggedStruct("Publish", { text: Schema.String })
  ]),
  server: Schema.Union([Schema.TaggedStruct("Echoed", { text: Schema.String })]),
  topics: { feed: { key: Schema.String, payload: Schema.Struct({ text: Schema.String }) } }
})

const route = Channel.route(bench, "/ws", {
  onMessage: (message, connection) =>
    message._tag === "Echo"
      ? connection.send({ _tag: "Echoed", text: message.text })
      : connection.publish("feed", "all", { text: message.text }),
  join: { feed: () => Effect.void }
})

const announce = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpServer, (server) =>
    Effect.sync(() => serveControl((server.address as { readonly port: number }).port, bench.protocol))
  )
)

App.serve(Router.make([route])).pipe(
  Hub.drainFirst,
  Layer.provide(Hub.layer()),
  Layer.merge(announce),
  Layer.provide(NodeHttpServer.layer(createServer, { port: 0, host: HOST })),
  Layer.launch,
  NodeRuntime.runMain
)
