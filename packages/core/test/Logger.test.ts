import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Logger as RequestLogger, RequestId, Route, Router } from "../src/index.ts"
import { auth, CurrentUser, session, UsersLive } from "./fixtures.ts"

interface Line {
  readonly level: string
  readonly message: unknown
  readonly cause: string | undefined
  readonly annotations: Record<string, unknown>
}

const capture = () => {
  const lines: Array<Line> = []
  const layer = Logger.layer([Logger.map(Logger.formatStructured, (line) => void lines.push(line))])
  return { lines, layer }
}

const app = Router.make([
  Route.get("/health", HttpServerResponse.text("ok")),
  Route.get("/crash", Effect.die(new Error("password=hunter2"))),
  Router.group("/api", [Route.get("/me", Effect.as(CurrentUser, HttpServerResponse.text("me")))]).pipe(
    Router.use(session, auth)
  )
]).pipe(Router.use(RequestId.middleware(), RequestLogger.middleware({ skip: (r) => r.url === "/skipped" })))

describe("Logger", () => {
  it("logs one line per request with method, path, status, duration and request id", async () => {
    const { lines, layer } = capture()
    const { handler, dispose } = App.toWebHandler(app, Layer.mergeAll(UsersLive, layer))
    await handler(new Request("http://x/health?token=secret", { headers: { "x-request-id": "req-1" } }))
    await dispose()
    expect(lines).toHaveLength(1)
    const [line] = lines
    expect(line!.level).toBe("INFO")
    expect(line!.message).toBe("request")
    expect(line!.annotations).toMatchObject({
      "http.method": "GET",
      "http.path": "/health",
      "http.status": 200,
      requestId: "req-1"
    })
    expect(typeof line!.annotations["durationMs"]).toBe("number")
    expect(JSON.stringify(lines)).not.toContain("secret")
  })

  it("logs a 401 refused by auth with its status and request id", async () => {
    const { lines, layer } = capture()
    const { handler, dispose } = App.toWebHandler(app, Layer.mergeAll(UsersLive, layer))
    const res = await handler(new Request("http://x/api/me", { headers: { "x-request-id": "req-401" } }))
    await dispose()
    expect(res.status).toBe(401)
    expect(lines.map((l) => [l.level, l.annotations["http.status"], l.annotations["requestId"]])).toEqual([
      ["INFO", 401, "req-401"]
    ])
  })

  it("logs a defect at error level with the request id, and the body leaks nothing", async () => {
    const { lines, layer } = capture()
    const { handler, dispose } = App.toWebHandler(app, Layer.mergeAll(UsersLive, layer))
    const res = await handler(new Request("http://x/crash", { headers: { "x-request-id": "req-500" } }))
    await dispose()
    expect(res.status).toBe(500)
    expect(await res.text()).not.toContain("hunter2")
    const defect = lines.find((l) => l.message === "unexpected defect")
    expect(defect?.level).toBe("ERROR")
    expect(defect?.annotations["requestId"]).toBe("req-500")
    expect(defect?.cause).toContain("hunter2")
    const request = lines.find((l) => l.message === "request")
    expect(request?.level).toBe("ERROR")
    expect(request?.annotations["http.status"]).toBe(500)
  })

  it("skips requests it is told to skip", async () => {
    const { lines, layer } = capture()
    const skipping = Router.make([Route.get("/skipped", HttpServerResponse.text("ok"))]).pipe(
      Router.use(RequestId.middleware(), RequestLogger.middleware({ skip: (r) => r.url === "/skipped" }))
    )
    const { handler, dispose } = App.toWebHandler(skipping, layer)
    await handler(new Request("http://x/skipped"))
    await dispose()
    expect(lines).toHaveLength(0)
  })
})

describe("RequestId", () => {
  it.effect("provides the id to handlers and can ignore the caller's", () =>
    Effect.gen(function* () {
      const result = yield* Effect.promise(async () => {
        const untrusting = Router.make([
          Route.get(
            "/",
            Effect.map(RequestId.RequestId, (id) => HttpServerResponse.text(id))
          )
        ]).pipe(Router.use(RequestId.middleware({ trustIncoming: false, generate: () => "generated" })))
        const { handler, dispose } = App.toWebHandler(untrusting, Layer.empty)
        const res = await handler(new Request("http://x/", { headers: { "x-request-id": "from-client" } }))
        await dispose()
        return { body: await res.text(), header: res.headers.get("x-request-id") }
      })
      expect(result).toEqual({ body: "generated", header: "generated" })
    })
  )
})
