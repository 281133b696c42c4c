/**
 * The Fastify 5 server: the stack as hooks of an encapsulated `/api` plugin, the payload checked by
 * a JSON Schema (Ajv) and echoed through a response schema, as a Fastify user would write them.
 */
import Fastify, { type FastifyReply, type FastifyRequest } from "fastify"
import {
  announce,
  badRequestBody,
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  HOST,
  logRequest,
  parseCookies,
  pathOf,
  type Principal,
  REQUEST_ID_HEADER,
  requestIdOf,
  TOKEN,
  unauthorizedBody,
  userBody
} from "../shared.ts"

declare module "fastify" {
  interface FastifyRequest {
    requestId: string
    startedAt: number
    cookies: Record<string, string>
    principal: Principal | undefined
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

// Fastify's own request logging (pino) is off: every server logs the same line through
// `logRequest`, from an `onResponse` hook here, which is where Fastify access logs belong.
const app = Fastify({ logger: false })

// The payload checks must answer the same 400 body as the other servers; Fastify's default error
// body has another shape. A body that is not JSON (FST_ERR_CTP_INVALID_JSON) is a 400 too.
app.setErrorHandler((error: { statusCode?: number; message: string }, _request, reply) => {
  const status = error.statusCode ?? 500
  if (status === 400) return reply.code(400).send(badRequestBody(error.message))
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
    api.decorateRequest("cookies", null as unknown as Record<string, string>)
    api.decorateRequest("principal", undefined)

    api.addHook("onRequest", async (request, reply) => {
      request.startedAt = performance.now()
      request.requestId = requestIdOf(request.headers[REQUEST_ID_HEADER] as string | undefined)
      reply.header(REQUEST_ID_HEADER, request.requestId)
    })
    api.addHook("onRequest", async (request) => {
      request.cookies = parseCookies(request.headers.cookie)
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
      void request.cookies["sid"]
      void request.principal
      reply.send(userBody(request.params.id))
    })
  },
  { prefix: "/api" }
)

await app.listen({ port: 0, host: HOST })
const address = app.server.address()
if (address !== null && typeof address === "object") announce(address.port)
