/**
 * The Hono server on @hono/node-server: the stack as `app.use` middleware on `/api/*`, the cookie
 * read with Hono's own helper, the payloads checked by the shared hand-written validators (the
 * `json-schema` one through Hono's built-in `validator("json", …)`). It sits out `session+jwt` and
 * `static` (@hono/node-server's `serveStatic` sends no ETag and answers no conditional request).
 */
import { serve } from "@hono/node-server"
import { Hono } from "hono"
import { getCookie } from "hono/cookie"
import { HTTPException } from "hono/http-exception"
import { validator } from "hono/validator"
import {
  announce,
  badRequestBody,
  bearerToken,
  benchPrincipal,
  CHALLENGE,
  HOST,
  isJsonContentType,
  logRequest,
  type Principal,
  REQUEST_ID_HEADER,
  requestIdOf,
  TOKEN,
  unauthorizedBody,
  unsupportedMediaTypeBody,
  userBody,
  validateNewUser,
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

// Hono's `validator("json")` throws an HTTPException(400) for a body that is not JSON; it gets the
// same 400 body as elsewhere.
app.onError((error, c) =>
  error instanceof HTTPException && error.status === 400
    ? c.json(badRequestBody(error.message), 400)
    : c.json({ error: "InternalServerError", message: "Internal Server Error" }, 500)
)

app.post(
  "/users",
  // The validator reads the body only for a JSON media type and validates `{}` otherwise; the 415
  // is answered here first.
  validator("json", (value, c) => {
    if (!isJsonContentType(c.req.header("content-type"))) return c.json(unsupportedMediaTypeBody, 415)
    const user = validateNewUser(value)
    return typeof user === "string" ? c.json(badRequestBody(user), 400) : user
  }),
  (c) => c.json(c.req.valid("json"), 201)
)

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
