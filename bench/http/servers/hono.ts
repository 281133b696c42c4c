/**
 * The Hono server on @hono/node-server: the stack as `app.use` middleware on `/api/*`, the cookie
 * read with Hono's own helper, the payload checked by the shared hand-written validator.
 */
import { serve } from "@hono/node-server"
import { Hono } from "hono"
import { getCookie } from "hono/cookie"
import {
  announce,
  badRequestBody,
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  HOST,
  logRequest,
  type Principal,
  REQUEST_ID_HEADER,
  requestIdOf,
  TOKEN,
  unauthorizedBody,
  userBody,
  validateOrder
} from "../shared.ts"

// The request-scoped values, typed through Hono's context variables.
type Env = {
  Variables: {
    requestId: string
    cookies: Record<string, string>
    principal: Principal
  }
}

const app = new Hono<Env>()

app.get("/hello", (c) => c.text("hello"))

app.post("/echo", async (c) => {
  let body: unknown
  try {
    body = await c.req.json()
  } catch {
    return c.json(badRequestBody("body is not valid JSON"), 400)
  }
  const order = validateOrder(body)
  return typeof order === "string" ? c.json(badRequestBody(order), 400) : c.json(order)
})

// Hono's bundled requestId, logger and bearerAuth middleware differ in behaviour (id charset, a
// text log line, a text 401), so these are written with the shared rules instead.
// The header is set before `next` with `c.header`, as Hono's own requestId middleware does: every
// response built later (the 401 included) carries it, and the node adapter keeps its fast path,
// which touching `c.res.headers` after `next` would leave (it materializes a web Response).
app.use("/api/*", async (c, next) => {
  const id = requestIdOf(c.req.header(REQUEST_ID_HEADER))
  c.set("requestId", id)
  c.header(REQUEST_ID_HEADER, id)
  await next()
})

app.use("/api/*", async (c, next) => {
  const start = performance.now()
  await next()
  logRequest({
    method: c.req.method,
    path: c.req.path,
    status: c.res.status,
    durationMs: performance.now() - start,
    requestId: c.get("requestId")
  })
})

app.use("/api/*", async (c, next) => {
  c.set("cookies", getCookie(c))
  await next()
})

app.use("/api/*", async (c, next) => {
  if (bearerToken(c.req.header("authorization")) !== TOKEN) {
    return c.json(unauthorizedBody, 401, { "www-authenticate": CHALLENGE })
  }
  c.set("principal", benchPrincipal)
  await next()
})

app.get("/api/users/:id", (c) => {
  void c.get("cookies")["sid"]
  void c.get("principal")
  return c.json(userBody(c.req.param("id")))
})

serve({ fetch: app.fetch, port: 0, hostname: HOST }, (info) => announce(info.port))
