/**
 * The Fastify 5 server: the stack as hooks of an encapsulated `/api` plugin, the payloads checked by
 * JSON Schemas (Ajv) and sent back through response schemas, `@fastify/cookie` +
 * `@fastify/session` (its default memory store) + `@fastify/jwt` for `session+jwt` in a plugin of
 * their own, and `@fastify/static` for `/assets/`, as a Fastify user would write them.
 */
import fastifyCookie from "@fastify/cookie"
import fastifyJwt from "@fastify/jwt"
import fastifySession from "@fastify/session"
import fastifyStatic from "@fastify/static"
import Fastify, { type FastifyReply, type FastifyRequest } from "fastify"
import {
  announce,
  badRequestBody,
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  CLOCK_TOLERANCE_S,
  HOST,
  INVALID_TOKEN_CHALLENGE,
  JWT_SECRET,
  limits,
  logRequest,
  loginBody,
  meBody,
  parseCookies,
  pathOf,
  platforms,
  type Principal,
  REQUEST_ID_HEADER,
  requestIdOf,
  SESSION_COOKIE,
  SESSION_MAX_AGE_S,
  SESSION_SECRET,
  staticRoot,
  TOKEN,
  unauthorizedBody,
  unsupportedMediaTypeBody,
  userBody
} from "../shared.ts"

declare module "fastify" {
  interface FastifyRequest {
    requestId: string
    startedAt: number
    // Named apart from `cookies`, which @fastify/cookie declares (its plugin does not reach `/api`).
    stackCookies: Record<string, string>
    principal: Principal | undefined
  }
  interface Session {
    counter?: number
  }
}

declare module "@fastify/jwt" {
  interface FastifyJWT {
    payload: { sub?: unknown }
    user: { sub?: unknown }
  }
}

// The `json` workload's payload as a JSON Schema: the same rules as the Effect Schema and
// `validateOrder`. `additionalProperties: false` with Fastify's default Ajv option
// `removeAdditional: true` drops unknown keys, as Schema decoding does.
const item = {
  type: "object",
  required: ["sku", "quantity", "price"],
  additionalProperties: false,
  properties: {
    sku: { type: "string" },
    quantity: { type: "integer", minimum: 1 },
    price: { type: "number", minimum: 0 }
  }
} as const

const order = {
  type: "object",
  required: ["id", "customer", "items", "tags", "note", "createdAt"],
  additionalProperties: false,
  properties: {
    id: { type: "string" },
    customer: {
      type: "object",
      required: ["name", "email", "vip"],
      additionalProperties: false,
      properties: { name: { type: "string" }, email: { type: "string" }, vip: { type: "boolean" } }
    },
    items: { type: "array", items: item },
    tags: { type: "array", items: { type: "string" } },
    note: { type: "string" },
    createdAt: { type: "string" }
  }
} as const

// The `json-schema` payload as a JSON Schema, from the same `limits` as the Effect Schema and
// `validateNewUser`.
const text = ([minLength, maxLength]: readonly [number, number]) =>
  ({ type: "string", minLength, maxLength }) as const
const integer = ([minimum, maximum]: readonly [number, number]) =>
  ({ type: "integer", minimum, maximum }) as const

const newUser = {
  type: "object",
  required: ["username", "email", "age", "profile", "devices", "score", "newsletter"],
  additionalProperties: false,
  properties: {
    username: text(limits.username),
    email: text(limits.email),
    age: integer(limits.age),
    profile: {
      type: "object",
      required: ["displayName", "bio", "locale", "address"],
      additionalProperties: false,
      properties: {
        displayName: text(limits.displayName),
        bio: text(limits.bio),
        locale: text(limits.locale),
        address: {
          type: "object",
          required: ["street", "city", "postcode", "country"],
          additionalProperties: false,
          properties: {
            street: text(limits.street),
            city: text(limits.city),
            postcode: text(limits.postcode),
            country: text(limits.country)
          }
        }
      }
    },
    devices: {
      type: "array",
      minItems: limits.devices[0],
      maxItems: limits.devices[1],
      items: {
        type: "object",
        required: ["id", "platform", "lastSeen", "trusted"],
        additionalProperties: false,
        properties: {
          id: text(limits.deviceId),
          platform: { type: "string", enum: platforms },
          lastSeen: integer(limits.lastSeen),
          trusted: { type: "boolean" }
        }
      }
    },
    score: { type: "number", minimum: limits.score[0], maximum: limits.score[1] },
    newsletter: { type: "boolean" }
  }
} as const

// Fastify's own request logging (pino) is off: every server logs the same line through
// `logRequest`, from an `onResponse` hook here, which is where Fastify access logs belong.
// Ajv's type coercion (Fastify's default `coerceTypes: "array"`) is off: the other servers refuse
// `"36"` for an integer, and so does this one.
const app = Fastify({ logger: false, ajv: { customOptions: { coerceTypes: false } } })

// The payload checks must answer the same 400 body as the other servers; Fastify's default error
// body has another shape. A body that is not JSON (FST_ERR_CTP_INVALID_JSON) is a 400 too, and a
// media type without a parser (FST_ERR_CTP_INVALID_MEDIA_TYPE) a 415.
app.setErrorHandler((error: { statusCode?: number; message: string }, _request, reply) => {
  const status = error.statusCode ?? 500
  if (status === 400) return reply.code(400).send(badRequestBody(error.message))
  if (status === 415) return reply.code(415).send(unsupportedMediaTypeBody)
  return reply.code(status).send({ error: "InternalServerError", message: "Internal Server Error" })
})

app.get("/hello", (_request, reply) => {
  reply.type("text/plain").send("hello")
})

app.post(
  "/echo",
  { schema: { body: order, response: { 200: order } } },
  (request: FastifyRequest, reply: FastifyReply) => {
    reply.send(request.body)
  }
)

// Hooks added inside a registered plugin run only for that plugin's routes, so `/hello` and
// `/echo` pay for none of them, as in the other servers.
void app.register(
  async (api) => {
    api.decorateRequest("requestId", "")
    api.decorateRequest("startedAt", 0)
    api.decorateRequest("stackCookies", null as unknown as Record<string, string>)
    api.decorateRequest("principal", undefined)

    api.addHook("onRequest", async (request, reply) => {
      request.startedAt = performance.now()
      request.requestId = requestIdOf(request.headers[REQUEST_ID_HEADER] as string | undefined)
      reply.header(REQUEST_ID_HEADER, request.requestId)
    })
    api.addHook("onRequest", async (request) => {
      request.stackCookies = parseCookies(request.headers.cookie)
    })
    api.addHook("onRequest", async (request, reply) => {
      if (bearerToken(request.headers.authorization) !== TOKEN) {
        return reply.code(401).header("www-authenticate", CHALLENGE).send(unauthorizedBody)
      }
      request.principal = benchPrincipal
    })
    api.addHook("onResponse", async (request, reply) => {
      logRequest({
        method: request.method,
        path: pathOf(request.url),
        status: reply.statusCode,
        durationMs: performance.now() - request.startedAt,
        requestId: request.requestId
      })
    })

    api.get<{ Params: { id: string } }>("/users/:id", (request, reply) => {
      void request.stackCookies["sid"]
      void request.principal
      reply.send(userBody(request.params.id))
    })
  },
  { prefix: "/api" }
)

app.post(
  "/users",
  { schema: { body: newUser, response: { 201: newUser } } },
  (request: FastifyRequest, reply: FastifyReply) => {
    reply.code(201).send(request.body)
  }
)

// `session+jwt`, in a plugin of its own so that `/hello`, `/echo` and `/api/users` parse no cookies
// and load no session. The session is loaded by @fastify/session's onRequest hook, before the route's
// own onRequest hook verifies the token (as in the Strata server: session outside, JWT inside).
void app.register(async (scope) => {
  await scope.register(fastifyCookie)
  await scope.register(fastifySession, {
    secret: SESSION_SECRET,
    cookieName: SESSION_COOKIE,
    // Strata's behaviour: no cookie for a session nobody wrote to, none re-sent on reads (the
    // default `rolling: true` sets the cookie on every response).
    saveUninitialized: false,
    rolling: false,
    // Plain HTTP on loopback: with `secure: true` (the default) Fastify sets no cookie at all.
    cookie: { secure: false, httpOnly: true, sameSite: "lax", path: "/", maxAge: SESSION_MAX_AGE_S * 1000 }
  })
  await scope.register(fastifyJwt, {
    secret: JWT_SECRET,
    // The verifier's cache is off by default: each request's token is verified, as elsewhere.
    verify: {
      algorithms: ["HS256"],
      requiredClaims: ["exp"],
      clockTolerance: CLOCK_TOLERANCE_S * 1000
    }
  })

  scope.post("/login", (request, reply) => {
    const counter = (request.session.get("counter") ?? 0) + 1
    request.session.set("counter", counter)
    reply.send(loginBody(counter))
  })

  scope.get(
    "/api/me",
    {
      onRequest: async (request, reply) => {
        try {
          const user = await request.jwtVerify<{ sub?: unknown }>()
          // Strata decodes the claims with a Schema: a token without a string `sub` is refused there.
          if (typeof user.sub !== "string") throw new Error("no sub")
        } catch (error) {
          const missing = (error as { code?: unknown }).code === "FST_JWT_NO_AUTHORIZATION_IN_HEADER"
          return reply
            .code(401)
            .header("www-authenticate", missing ? CHALLENGE : INVALID_TOKEN_CHALLENGE)
            .send(unauthorizedBody)
        }
      }
    },
    (request, reply) => {
      reply.send(meBody(request.user.sub as string, request.session.get("counter") ?? 0))
    }
  )
})

// `static`: @fastify/static (send): stat-based weak ETag, Last-Modified, 304s.
void app.register(fastifyStatic, {
  root: staticRoot(),
  prefix: "/assets/",
  index: false,
  decorateReply: false,
  // `Cache-Control: public, max-age=3600`, the STATIC_CACHE_CONTROL of the other servers.
  cacheControl: true,
  maxAge: 3600 * 1000
})

await app.listen({ port: 0, host: HOST })
const address = app.server.address()
if (address !== null && typeof address === "object") announce(address.port)
