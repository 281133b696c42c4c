/**
 * The raw Effect server: the same behaviour as the Strata server, hand-written on Effect 4's
 * `effect/http` HttpRouter (`HttpRouter.add`, `HttpRouter.middleware`, `HttpRouter.serve`) with no
 * Strata. The difference between the two is what Strata's layer costs per request. It sits out
 * `session+jwt`: Effect has neither sessions nor JWT verification to write it with.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as HttpStaticServer from "effect/http/HttpStaticServer"
import { createServer } from "node:http"
import {
  badRequestBody,
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  HOST,
  isJsonContentType,
  pathOf,
  type Principal as PrincipalShape,
  REQUEST_ID_HEADER,
  requestIdOf,
  STATIC_CACHE_CONTROL,
  staticRoot,
  TOKEN,
  unauthorizedBody,
  unsupportedMediaTypeBody,
  userBody
} from "../shared.ts"
import { AnnouncePort, JsonLogger, NewUser, Order } from "./effect-shared.ts"

class RequestId extends Context.Service<RequestId, string>()("bench/RequestId") {}
class Session extends Context.Service<Session, { readonly sid: string | undefined }>()("bench/Session") {}
class Principal extends Context.Service<Principal, PrincipalShape>()("bench/Principal") {}

// Each middleware below is the hand-written equivalent of one Strata middleware. They answer with
// responses rather than typed errors (a 401 is built where it is decided), which is how one writes
// raw HttpRouter middleware when nothing maps errors to responses.

const requestIdMiddleware = HttpRouter.middleware<{ provides: RequestId }>()((next) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const id = requestIdOf(request.headers[REQUEST_ID_HEADER])
    return next.pipe(
      Effect.provideService(RequestId, id),
      Effect.annotateLogs("requestId", id),
      Effect.map(HttpServerResponse.setHeader(REQUEST_ID_HEADER, id))
    )
  })
)

const loggerMiddleware = HttpRouter.middleware()((next) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const start = yield* Clock.currentTimeNanos
    const response = yield* next
    const durationMs = Number((yield* Clock.currentTimeNanos) - start) / 1e6
    yield* Effect.logInfo("request").pipe(
      Effect.annotateLogs({
        "http.method": request.method,
        "http.path": pathOf(request.url),
        "http.status": response.status,
        durationMs: Math.round(durationMs * 1000) / 1000
      })
    )
    return response
  })
)

const cookiesMiddleware = HttpRouter.middleware<{ provides: Session }>()((next) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.provideService(next, Session, { sid: request.cookies["sid"] })
  )
)

const unauthorized = HttpServerResponse.jsonUnsafe(unauthorizedBody, {
  status: 401,
  headers: { "www-authenticate": CHALLENGE }
})

// Written as a generator like the Strata one (which needs it to type its two outcomes), so the
// two Effect servers differ by their frameworks, not by the style of this function.
const bearerMiddleware = HttpRouter.middleware<{ provides: Principal }>()((next) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (bearerToken(request.headers["authorization"]) !== TOKEN) return unauthorized
    return yield* Effect.provideService(next, Principal, benchPrincipal)
  })
)

const user = HttpRouter.add(
  "GET",
  "/api/users/:id",
  Effect.gen(function* () {
    yield* Session
    yield* Principal
    const { id } = yield* HttpRouter.params
    return HttpServerResponse.jsonUnsafe(userBody(id ?? ""))
  })
).pipe(
  // `a.combine(b)`: b runs outside a. Written innermost first, so the request meets request id,
  // logger, cookies, bearer in that order, as in the Strata server.
  Layer.provide(
    bearerMiddleware.combine(cookiesMiddleware).combine(loggerMiddleware).combine(requestIdMiddleware).layer
  )
)

const echo = HttpRouter.add(
  "POST",
  "/echo",
  HttpServerRequest.schemaBodyJson(Order).pipe(
    Effect.map((order) => HttpServerResponse.jsonUnsafe(order)),
    Effect.catch((error) =>
      Effect.succeed(HttpServerResponse.jsonUnsafe(badRequestBody(error.message), { status: 400 }))
    )
  )
)

// `schemaBodyJson` parses any body as JSON whatever its Content-Type; the 415 is checked by hand.
const createUser = HttpRouter.add(
  "POST",
  "/users",
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    isJsonContentType(request.headers["content-type"])
      ? HttpServerRequest.schemaBodyJson(NewUser).pipe(
          Effect.map((input) => HttpServerResponse.jsonUnsafe(input, { status: 201 })),
          Effect.catch((error) =>
            Effect.succeed(HttpServerResponse.jsonUnsafe(badRequestBody(error.message), { status: 400 }))
          )
        )
      : Effect.succeed(HttpServerResponse.jsonUnsafe(unsupportedMediaTypeBody, { status: 415 }))
  )
)

// Effect's own static file server: ETag and Last-Modified from `HttpPlatform.fileResponse`, 304s.
const assets = HttpStaticServer.layer({
  root: staticRoot(),
  prefix: "/assets",
  cacheControl: STATIC_CACHE_CONTROL,
  index: undefined
})

const hello = HttpRouter.add("GET", "/hello", HttpServerResponse.text("hello"))

HttpRouter.serve(Layer.mergeAll(hello, user, echo, createUser, assets), { disableLogger: true }).pipe(
  Layer.merge(AnnouncePort),
  Layer.provide(NodeHttpServer.layer(createServer, { port: 0, host: HOST })),
  Layer.provide(JsonLogger),
  Layer.launch,
  NodeRuntime.runMain
)
