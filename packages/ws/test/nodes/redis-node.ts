/**
 * One node of the multi-process test: the chat app on 127.0.0.1 (a free port), its topics fanned
 * out through Redis under the prefix given as the first argument. Prints `{"port":…}` once
 * listening; SIGTERM shuts it down gracefully.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { App } from "@strata/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServer from "effect/http/HttpServer"
import { createServer } from "node:http"
import { Hub } from "../../src/index.ts"
import * as PubSubRedis from "../../src/PubSubRedis.ts"
import { makeApp, UsersLive } from "../fixtures.ts"

const prefix = process.argv[2] ?? "strata:ws:test:"

const announce = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpServer, (server) =>
    Effect.sync(() =>
      console.log(JSON.stringify({ port: (server.address as { readonly port: number }).port }))
    )
  )
)

App.serve(makeApp()).pipe(
  Hub.drainFirst,
  Layer.provide(UsersLive),
  Layer.provide(Hub.layerWith({ tick: "200 millis" })),
  Layer.provide(
    PubSubRedis.layerFromUrl("redis://127.0.0.1:6379", { prefix, nodeTtl: "1 second", ttl: "10 minutes" })
  ),
  Layer.merge(announce),
  Layer.provide(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
  Layer.launch,
  NodeRuntime.runMain
)
