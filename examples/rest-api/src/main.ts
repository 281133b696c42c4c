/**
 * Starts the REST example on PORT (default 3000) and prints where it listens and how to try it.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServer from "effect/http/HttpServer"
import { createServer } from "node:http"
import { App } from "@strata/core"
import { app } from "./app.ts"
import * as Notes from "./Notes.ts"

const port = Number(process.env["PORT"] ?? 3000)
const host = process.env["HOST"] ?? "127.0.0.1"

const banner = Layer.effectDiscard(
  Effect.gen(function* () {
    const url = HttpServer.formatAddress((yield* HttpServer.HttpServer).address)
    yield* Effect.sync(() =>
      console.log(
        [
          `Strata REST example listening on ${url}`,
          `  curl ${url}/health`,
          `  curl -H 'authorization: Bearer bob-token' ${url}/api/notes`,
          `  curl -H 'authorization: Bearer bob-token' -H 'content-type: application/json' -d '{"title":"hi","body":"there"}' ${url}/api/notes`,
          `  curl -i ${url}/api/notes            # 401 with WWW-Authenticate and x-request-id`,
          `Press Ctrl+C to stop.`
        ].join("\n")
      )
    )
  })
)

App.serve(app).pipe(
  Layer.merge(banner),
  Layer.provide(Notes.layerMemory),
  Layer.provide(NodeHttpServer.layer(createServer, { port, host })),
  Layer.launch,
  NodeRuntime.runMain
)
