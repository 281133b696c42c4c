/**
 * What "answers right" means, checked before a server is loaded: status, body and the headers the
 * workload is about. A server that fails any check is reported and not benchmarked, so no figure
 * comes from a server that skipped work the others do.
 */
import { deepStrictEqual } from "node:assert/strict"
import { request } from "node:http"
import { CHALLENGE, REQUEST_ID_HEADER, sampleOrder, TOKEN, userBody } from "./shared.ts"

export const workloadNames = ["hello", "stack", "json"] as const
export type WorkloadName = (typeof workloadNames)[number]

/** One request the load repeats. */
export interface LoadRequest {
  readonly method: "GET" | "POST"
  readonly path: string
  readonly headers: Record<string, string>
  readonly body?: string
}

/** A session cookie among a few others, as a browser would send. */
const COOKIE = "theme=dark; sid=s3ss10n-4f9b2c; lang=en-GB; consent=%7B%22ads%22%3Afalse%7D"

/**
 * What the load sends per workload. The `stack` request has no `x-request-id`, so every server
 * generates one per request (the costlier branch), as behind a proxy that sets none.
 */
export const loads: Record<WorkloadName, LoadRequest> = {
  hello: { method: "GET", path: "/hello", headers: {} },
  stack: {
    method: "GET",
    path: "/api/users/42",
    headers: { authorization: `Bearer ${TOKEN}`, cookie: COOKIE }
  },
  json: {
    method: "POST",
    path: "/echo",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(sampleOrder)
  }
}

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
}

const send = (base: string, req: LoadRequest): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...req.headers }
    if (req.body !== undefined) headers["content-length"] = Buffer.byteLength(req.body)
    // A fresh connection per check (agent: false), closed after, so none lingers into the load.
    const r = request(
      `${base}${req.path}`,
      { method: req.method, headers, agent: false, timeout: 5_000 },
      (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => (body += chunk))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
        res.on("error", reject)
      }
    )
    r.on("timeout", () => r.destroy(new Error("no answer within 5 s")))
    r.on("error", reject)
    r.end(req.body)
  })

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The request log line a `stack` request must produce. */
export interface ExpectedLog {
  readonly path: string
  readonly status: number
  readonly requestId: string
}

interface Check {
  readonly name: string
  readonly request: LoadRequest
  readonly expect: (answer: Answer) => void
  /** Whether the request goes through the logger middleware. */
  readonly logged: boolean
}

const header = (answer: Answer, name: string): string | undefined => {
  const value = answer.headers[name]
  return Array.isArray(value) ? value.join(", ") : value
}

const expectJson = (answer: Answer, status: number, body: unknown) => {
  deepStrictEqual(answer.status, status, "status")
  if (!(header(answer, "content-type") ?? "").includes("application/json")) {
    throw new Error(`content-type is ${header(answer, "content-type")}, not JSON`)
  }
  deepStrictEqual(JSON.parse(answer.body), body, "body")
}

const expectBadRequest = (answer: Answer) => {
  deepStrictEqual(answer.status, 400, "status")
  const body = JSON.parse(answer.body) as { error?: unknown; message?: unknown }
  deepStrictEqual(body.error, "BadRequest", "body.error")
  deepStrictEqual(typeof body.message, "string", "typeof body.message")
}

const expectUnauthorized = (answer: Answer) => {
  expectJson(answer, 401, { error: "Unauthorized", message: "Unauthorized" })
  deepStrictEqual(header(answer, "www-authenticate"), CHALLENGE, "www-authenticate")
}

const expectGeneratedId = (answer: Answer) => {
  const id = header(answer, REQUEST_ID_HEADER) ?? ""
  if (!UUID.test(id)) throw new Error(`x-request-id ${JSON.stringify(id)} is not a fresh UUID`)
}

const stack = loads.stack
const json = loads.json

const checks: Record<WorkloadName, ReadonlyArray<Check>> = {
  hello: [
    {
      name: "GET /hello",
      request: loads.hello,
      logged: false,
      expect: (a) => {
        deepStrictEqual(a.status, 200, "status")
        deepStrictEqual(a.body, "hello", "body")
      }
    }
  ],
  stack: [
    {
      name: "the load's request (no x-request-id)",
      request: stack,
      logged: true,
      expect: (a) => {
        expectJson(a, 200, userBody("42"))
        expectGeneratedId(a)
      }
    },
    {
      name: "a well-formed x-request-id is honoured",
      request: { ...stack, headers: { ...stack.headers, [REQUEST_ID_HEADER]: "check-abc.123" } },
      logged: true,
      expect: (a) => {
        expectJson(a, 200, userBody("42"))
        deepStrictEqual(header(a, REQUEST_ID_HEADER), "check-abc.123", "x-request-id")
      }
    },
    {
      name: "a malformed x-request-id is replaced",
      request: { ...stack, headers: { ...stack.headers, [REQUEST_ID_HEADER]: "<script> x" } },
      logged: true,
      expect: expectGeneratedId
    },
    {
      name: "no Authorization: 401 with a challenge and a request id",
      request: { ...stack, headers: { cookie: COOKIE, [REQUEST_ID_HEADER]: "check-401" } },
      logged: true,
      expect: (a) => {
        expectUnauthorized(a)
        deepStrictEqual(header(a, REQUEST_ID_HEADER), "check-401", "x-request-id")
      }
    },
    {
      name: "a wrong bearer token: 401",
      request: { ...stack, headers: { ...stack.headers, authorization: "Bearer not-the-token" } },
      logged: true,
      expect: expectUnauthorized
    },
    {
      name: "another path parameter",
      request: { ...stack, path: "/api/users/ada" },
      logged: true,
      expect: (a) => expectJson(a, 200, userBody("ada"))
    }
  ],
  json: [
    {
      name: "the load's body is echoed",
      request: json,
      logged: false,
      expect: (a) => expectJson(a, 200, sampleOrder)
    },
    {
      name: "unknown keys are dropped",
      request: { ...json, body: JSON.stringify({ ...sampleOrder, extra: true }) },
      logged: false,
      expect: (a) => expectJson(a, 200, sampleOrder)
    },
    {
      name: "a fractional quantity: 400",
      request: {
        ...json,
        body: JSON.stringify({ ...sampleOrder, items: [{ sku: "x", quantity: 1.5, price: 1 }] })
      },
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a missing field: 400",
      request: { ...json, body: JSON.stringify({ ...sampleOrder, customer: { name: "x" } }) },
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a body that is not JSON: 400",
      request: { ...json, body: '{"id": "unterminated' },
      logged: false,
      expect: expectBadRequest
    }
  ]
}

/**
 * Runs the checks of the given workloads in order. Returns the failures (empty when all pass) and
 * the log lines the logged requests must have produced, in order.
 */
export const verify = async (
  base: string,
  workloads: ReadonlyArray<WorkloadName>
): Promise<{
  readonly failures: ReadonlyArray<string>
  readonly expectedLogs: ReadonlyArray<ExpectedLog>
}> => {
  const failures: Array<string> = []
  const expectedLogs: Array<ExpectedLog> = []
  for (const workload of workloads) {
    for (const check of checks[workload]) {
      try {
        const answer = await send(base, check.request)
        check.expect(answer)
        if (check.logged) {
          expectedLogs.push({
            path: check.request.path,
            status: answer.status,
            requestId: header(answer, REQUEST_ID_HEADER) ?? ""
          })
        }
      } catch (error) {
        failures.push(`${workload}: ${check.name}: ${error instanceof Error ? error.message : String(error)}`)
      }
    }
  }
  return { failures, expectedLogs }
}

/**
 * Checks the request log a server wrote to stderr: exactly one JSON line per logged request, with
 * method, path, status, a duration and the request id, and none for the routes without a logger.
 */
export const verifyLogs = (stderr: string, expected: ReadonlyArray<ExpectedLog>): ReadonlyArray<string> => {
  const lines: Array<Record<string, unknown>> = []
  for (const text of stderr.split("\n")) {
    if (!text.startsWith("{")) continue
    try {
      const line = JSON.parse(text) as { message?: unknown; annotations?: Record<string, unknown> }
      if (line.message === "request" && line.annotations !== undefined) lines.push(line.annotations)
    } catch {
      // Not a log line of ours (a framework's own output): ignored.
    }
  }
  if (lines.length !== expected.length) {
    return [`log: ${lines.length} request lines for ${expected.length} logged requests`]
  }
  const failures: Array<string> = []
  expected.forEach((want, i) => {
    const got = lines[i]!
    const same =
      got["http.method"] === "GET" &&
      got["http.path"] === want.path &&
      got["http.status"] === want.status &&
      got["requestId"] === want.requestId &&
      typeof got["durationMs"] === "number"
    if (!same) failures.push(`log: line ${i + 1} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`)
  })
  return failures
}
