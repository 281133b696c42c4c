import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, HttpError, Logger, RequestId, Route, Router } from "../src/index.ts"
import { admin, auth, CurrentUser, session, UsersLive, Admin } from "./fixtures.ts"

class NoteNotFound extends HttpError.Class("NoteNotFound", { status: 404, message: "no such note" })<{
  readonly id: string
}> {}

const me = Route.get(
  "/me",
  Effect.map(CurrentUser, (user) => HttpServerResponse.jsonUnsafe(user))
)
const adminOnly = Route.get(
  "/admin",
  Effect.map(Admin, (user) => HttpServerResponse.text(`hello ${user.name}`))
)
const note = Route.get("/notes/:id", Effect.fail(new NoteNotFound({ id: "x" })))
const boom = Route.get("/boom", Effect.die(new Error("secret-db-password=hunter2")))
const health = Route.get("/health", HttpServerResponse.text("ok"))

const app = Router.make([
  health,
  boom,
  Router.group("/api", [me, note, Router.group("/admin", [adminOnly]).pipe(Router.use(admin))]).pipe(
    Router.use(session, auth)
  )
]).pipe(Router.use(RequestId.middleware(), Logger.middleware()))

describe("App", () => {
  const { handler, dispose } = App.toWebHandler(app, UsersLive)

  it("serves a public route and sets a request id", async () => {
    const res = await handler(new Request("http://x/health"))
    expect(res.status).toBe(200)
    expect(await res.text()).toBe("ok")
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
  })

  it("honours a well-formed incoming request id and replaces a malformed one", async () => {
    const ok = await handler(new Request("http://x/health", { headers: { "x-request-id": "abc-123" } }))
    expect(ok.headers.get("x-request-id")).toBe("abc-123")
    for (const malformed of ["<script>", "a b", "x".repeat(129)]) {
      const bad = await handler(new Request("http://x/health", { headers: { "x-request-id": malformed } }))
      expect(bad.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
    }
  })

  it("provides CurrentUser through session and auth", async () => {
    const res = await handler(new Request("http://x/api/me", { headers: { cookie: "sid=2" } }))
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ id: "2", name: "Bob", role: "member" })
  })

  it("answers 401 with a challenge and still carries the request id", async () => {
    const res = await handler(new Request("http://x/api/me", { headers: { "x-request-id": "r-1" } }))
    expect(res.status).toBe(401)
    expect(res.headers.get("www-authenticate")).toBe('Cookie realm="test"')
    expect(res.headers.get("x-request-id")).toBe("r-1")
    expect(await res.json()).toEqual({ error: "Unauthorized", message: "Unauthorized" })
  })

  it("refines CurrentUser into Admin and answers 403 to members", async () => {
    const ok = await handler(new Request("http://x/api/admin/admin", { headers: { cookie: "sid=1" } }))
    expect(ok.status).toBe(200)
    expect(await ok.text()).toBe("hello Ada")
    const no = await handler(new Request("http://x/api/admin/admin", { headers: { cookie: "sid=2" } }))
    expect(no.status).toBe(403)
  })

  it("maps a user's HttpError to its response", async () => {
    const res = await handler(new Request("http://x/api/notes/7", { headers: { cookie: "sid=2" } }))
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({ error: "NoteNotFound", message: "no such note" })
  })

  it("turns a defect into a 500 that leaks nothing", async () => {
    const res = await handler(new Request("http://x/boom", { headers: { "x-request-id": "r-boom" } }))
    expect(res.status).toBe(500)
    const body = await res.text()
    expect(body).not.toContain("hunter2")
    expect(JSON.parse(body)).toEqual({
      error: "InternalServerError",
      message: "Internal Server Error",
      requestId: "r-boom"
    })
  })

  it("answers unknown paths with a JSON 404 through the top middleware", async () => {
    const res = await handler(new Request("http://x/nope", { headers: { "x-request-id": "r-404" } }))
    expect(res.status).toBe(404)
    expect(res.headers.get("x-request-id")).toBe("r-404")
    expect(await res.json()).toEqual({ error: "NotFound", message: "Not Found" })
  })

  it.effect("disposes", () => Effect.promise(() => dispose()))
})

describe("HEAD", () => {
  it("answers HEAD on a GET route with its status and headers, not the catch-all 404", async () => {
    const { handler, dispose } = App.toWebHandler(
      Router.make([Route.get("/page", HttpServerResponse.text("hello", { headers: { "x-kind": "page" } }))]),
      UsersLive
    )
    const res = await handler(new Request("http://x/page", { method: "HEAD" }))
    expect(res.status).toBe(200)
    expect(res.headers.get("x-kind")).toBe("page")
    expect((await handler(new Request("http://x/other", { method: "HEAD" }))).status).toBe(404)
    await dispose()
  })
})
