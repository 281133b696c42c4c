/**
 * The Strata server: the three workloads written the way a Strata user would write them, with the
 * built-in request id and logger middleware, and cookie and bearer middleware made with
 * `Middleware.make`, served by `App.serve` on @effect/platform-node.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { App, HttpError, Logger, Middleware, RequestId, Route, Router } from "@strata/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { createServer } from "node:http"
import {
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  HOST,
  type Principal as PrincipalShape,
  TOKEN,
  userBody
} from "../shared.ts"
import { AnnouncePort, JsonLogger, Order } from "./effect-shared.ts"

/** The `sid` cookie of the request, if any. */
class Session extends Middleware.Service<Session, { readonly sid: string | undefined }>()("bench/Session") {}

/** Who the bearer token belongs to. */
class Principal extends Middleware.Service<Principal, PrincipalShape>()("bench/Principal") {}

const cookies = Middleware.make({
  name: "cookies",
  provides: [Session],
  apply: (next) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.provideService(next, Session, { sid: request.cookies["sid"] })
    )
})

const bearer = Middleware.make({
  name: "bearer",
  provides: [Principal],
  raises: ["Unauthorized"],
  apply: (next) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (bearerToken(request.headers["authorization"]) !== TOKEN) {
        return yield* new HttpError.Unauthorized({ challenge: CHALLENGE, reason: "bad or missing token" })
      }
      return yield* Effect.provideService(next, Principal, benchPrincipal)
    })
})

const user = Route.get(
  "/users/:id",
  Effect.gen(function* () {
    // Reading the services is what a handler behind this stack does; Strata checks they are provided.
    yield* Session
    yield* Principal
    const { id } = yield* HttpRouter.params
    return HttpServerResponse.jsonUnsafe(userBody(id ?? ""))
  })
)

const echo = Route.post(
  "/echo",
  HttpServerRequest.schemaBodyJson(Order).pipe(
    Effect.map((order) => HttpServerResponse.jsonUnsafe(order)),
    // Both a body that is not JSON and one that does not match become Strata's 400.
    Effect.catch((error) => Effect.fail(new HttpError.BadRequest({ reason: error.message })))
  )
)

const app = Router.make([
  Route.get("/hello", HttpServerResponse.text("hello")),
  echo,
  Router.group("/api", [user]).pipe(
    Router.use(RequestId.middleware(), Logger.middleware()),
    Router.use(cookies, bearer)
  )
])

App.serve(app).pipe(
  Layer.merge(AnnouncePort),
  Layer.provide(NodeHttpServer.layer(createServer, { port: 0, host: HOST })),
  Layer.provide(JsonLogger),
  Layer.launch,
  NodeRuntime.runMain
)
