/**
 * The Strata server: the workloads written the way a Strata user would write them, with the
 * built-in request id and logger middleware, and cookie and bearer middleware made with
 * `Middleware.make`; `Session.middleware` (memory store) and `Auth.jwt` for `session+jwt`, a
 * `Body.Json` service for `json-schema`, `Static.route` for `static`; served by `App.serve` on
 * @effect/platform-node.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import {
  App,
  Auth,
  Body,
  HttpError,
  Logger,
  Middleware,
  RequestId,
  Route,
  Router,
  Session,
  Static
} from "@strata/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { createServer } from "node:http"
import {
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  CLOCK_TOLERANCE_S,
  HOST,
  JWT_SECRET,
  loginBody,
  meBody,
  type Principal as PrincipalShape,
  SESSION_COOKIE,
  SESSION_SECRET,
  STATIC_CACHE_CONTROL,
  staticRoot,
  TOKEN,
  userBody
} from "../shared.ts"
import { AnnouncePort, JsonLogger, NewUser, Order } from "./effect-shared.ts"

/** The `sid` cookie of the request, if any. */
class SidCookie extends Middleware.Service<SidCookie, { readonly sid: string | undefined }>()(
  "bench/Session"
) {}

/** Who the bearer token belongs to. */
class Principal extends Middleware.Service<Principal, PrincipalShape>()("bench/Principal") {}

const cookies = Middleware.make({
  name: "cookies",
  provides: [SidCookie],
  apply: (next) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.provideService(next, SidCookie, { sid: request.cookies["sid"] })
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
    yield* SidCookie
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

// `session+jwt`: a session holding a counter, and a JWT naming the user.

class BenchSession extends Session.Service<BenchSession>()("bench/BenchSession", {
  schema: Schema.Struct({ counter: Schema.optionalKey(Schema.Int) })
}) {}

class JwtUser extends Middleware.Service<JwtUser, { readonly sub: string }>()("bench/JwtUser") {}

const session = Session.middleware(BenchSession, {
  // Plain HTTP on loopback: not `Secure`, as in the Fastify server (a Secure cookie is still sent
  // by the runner, but Fastify would refuse to set one over HTTP).
  cookie: { keys: Redacted.make(SESSION_SECRET), name: SESSION_COOKIE, secure: false }
})

const jwt = Auth.jwt({
  provides: JwtUser,
  secret: Redacted.make(JWT_SECRET),
  algorithms: ["HS256"],
  realm: "bench",
  clockTolerance: `${CLOCK_TOLERANCE_S} seconds`,
  decode: Schema.Struct({ sub: Schema.String })
})

const login = Route.post(
  "/login",
  Effect.gen(function* () {
    const handle = yield* BenchSession
    const counter = ((yield* handle.get("counter")) ?? 0) + 1
    yield* handle.set("counter", counter)
    return HttpServerResponse.jsonUnsafe(loginBody(counter))
  })
)

// Reads the session and writes nothing: the session middleware saves nothing and sets no cookie.
const me = Route.get(
  "/me",
  Effect.gen(function* () {
    const { sub } = yield* JwtUser
    const counter = (yield* (yield* BenchSession).get("counter")) ?? 0
    return HttpServerResponse.jsonUnsafe(meBody(sub, counter))
  })
)

// `json-schema`: the body as a typed request service, read and decoded by `Body.middleware`.

class CreateUser extends Body.Json<CreateUser>()("bench/CreateUser", NewUser) {}

const createUser = Route.post(
  "/users",
  Effect.gen(function* () {
    const input = yield* CreateUser
    return HttpServerResponse.jsonUnsafe(input, { status: 201 })
  })
)

// `static`: the directory the runner made, under /assets/.

const assets = Static.route("/assets/*", {
  root: staticRoot(),
  cacheControl: STATIC_CACHE_CONTROL,
  index: false
})

const app = Router.make([
  Route.get("/hello", HttpServerResponse.text("hello")),
  echo,
  Router.group("/api", [user]).pipe(
    Router.use(RequestId.middleware(), Logger.middleware()),
    Router.use(cookies, bearer)
  ),
  // The session runs outside the JWT check, as in the Fastify server (its onRequest hook loads the
  // session before a route hook verifies the token).
  Router.group("", [login, Router.group("/api", [me]).pipe(Router.use(jwt))]).pipe(Router.use(session)),
  Router.group("", [createUser]).pipe(Router.use(Body.middleware(CreateUser))),
  assets
])

App.serve(app).pipe(
  Layer.merge(AnnouncePort),
  Layer.provide(Session.layerMemory()),
  Layer.provide(NodeHttpServer.layer(createServer, { port: 0, host: HOST })),
  Layer.provide(JsonLogger),
  Layer.launch,
  NodeRuntime.runMain
)
