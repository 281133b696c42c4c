import { afterAll, describe, expect, it } from "@effect/vitest"
import { App } from "@strata/core"
import { app, layerMemory } from "../src/app.ts"

const { handler, dispose } = App.toWebHandler(app, layerMemory)
afterAll(() => dispose())

const bearer = (token: string | undefined, init: RequestInit = {}): RequestInit => ({
  ...init,
  headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...init.headers }
})

const postJson = (token: string, body: unknown) =>
  handler(
    new Request(
      "http://x/api/notes",
      bearer(token, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body)
      })
    )
  )

/**
 * A browser against a fresh server (its own stores, so login rate limits do not carry over): keeps
 * cookies, reads the CSRF token off the page, posts forms.
 */
const browser = () => {
  const server = App.toWebHandler(app, layerMemory)
  afterAll(() => server.dispose())
  const jar = new Map<string, string>()
  const send = async (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers)
    if (!headers.has("origin")) headers.set("origin", "http://x")
    if (jar.size > 0) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "))
    const res = await server.handler(new Request(`http://x${path}`, { ...init, headers }))
    for (const cookie of res.headers.getSetCookie()) {
      const [pair] = cookie.split(";")
      const [name, value] = pair!.split("=") as [string, string]
      if (/Max-Age=0/.test(cookie)) jar.delete(name)
      else jar.set(name, value)
    }
    return res
  }
  const page = async () => {
    const res = await send("/")
    const html = await res.text()
    const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1]
    return { res, html, token }
  }
  const form = async (path: string, fields: Record<string, string>) => {
    const { token } = await page()
    return send(path, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ _csrf: token ?? "", ...fields }).toString()
    })
  }
  return { send, page, form, jar }
}

describe("rest-api example: JSON API", () => {
  it("keeps the API behind auth, with a challenge and a request id", async () => {
    expect((await handler(new Request("http://x/health"))).status).toBe(200)
    const res = await handler(new Request("http://x/api/notes"))
    expect(res.status).toBe(401)
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="notes"')
    expect(res.headers.get("x-request-id")).toBeTruthy()
  })

  it("creates, lists and reads a user's notes, and hides them from others", async () => {
    const created = await postJson("bob-token", { title: "groceries", body: "milk" })
    expect(created.status).toBe(201)
    const note = (await created.json()) as { id: string; owner: string }
    expect(note.owner).toBe("bob")
    const list = await handler(new Request("http://x/api/notes", bearer("bob-token")))
    expect(await list.json()).toEqual([{ id: note.id, owner: "bob", title: "groceries", body: "milk" }])
    expect(list.headers.get("ratelimit-policy")).toBe('"api";q=100;w=60')
    const foreign = await handler(new Request(`http://x/api/notes/${note.id}`, bearer("alice-token")))
    expect(foreign.status).toBe(404)
    expect(await foreign.json()).toEqual({ error: "NoteNotFound", message: "No such note" })
  })

  it("answers bad bodies with 400 and a field-level report, and wrong media types with 415", async () => {
    const invalid = await postJson("bob-token", { title: "", body: 3 })
    expect(invalid.status).toBe(400)
    const report = (await invalid.json()) as { error: string; issues: Array<{ path: string }> }
    expect(report.error).toBe("BadRequest")
    expect(report.issues.map((i) => i.path).toSorted()).toEqual(["body", "title"])
    expect((await postJson("bob-token", "{not json")).status).toBe(400)
    const text = await handler(
      new Request(
        "http://x/api/notes",
        bearer("bob-token", { method: "POST", body: "hi", headers: { "content-type": "text/plain" } })
      )
    )
    expect(text.status).toBe(415)
  })

  it("lets only admins delete any note", async () => {
    const note = (await (await postJson("bob-token", { title: "t", body: "b" })).json()) as { id: string }
    const del = (token: string) =>
      handler(new Request(`http://x/api/admin/notes/${note.id}`, bearer(token, { method: "DELETE" })))
    expect((await del("bob-token")).status).toBe(403)
    expect((await del("alice-token")).status).toBe(204)
    expect((await del("alice-token")).status).toBe(404)
  })

  it("sets the security headers", async () => {
    const res = await handler(new Request("http://x/health"))
    expect(res.headers.get("x-content-type-options")).toBe("nosniff")
    expect(res.headers.get("content-security-policy")).toContain("default-src 'self'")
  })
})

describe("rest-api example: pages with a session", () => {
  it("logs in through the form, regenerating the session, and shows the user's notes", async () => {
    const b = browser()
    const first = await b.page()
    expect(first.html).toContain('action="/login"')
    const before = b.jar.get("sid")
    const login = await b.form("/login", { username: "bob", password: "bob-password" })
    expect([login.status, login.headers.get("location")]).toEqual([303, "/"])
    expect(b.jar.get("sid")).not.toBe(before)
    expect((await b.form("/notes", { title: "from the form", body: "<b>safe</b>" })).status).toBe(303)
    const { html } = await b.page()
    expect(html).toContain("Notes of Bob")
    expect(html).toContain("from the form")
    expect(html).toContain("&lt;b&gt;safe&lt;/b&gt;")
    // The browser's session also works on the API's /me (either a bearer token or the session).
    expect(await (await b.send("/api/me")).json()).toEqual({ id: "bob", name: "Bob", role: "member" })
  })

  it("refuses a form without the CSRF token, and one from another origin", async () => {
    const b = browser()
    await b.form("/login", { username: "bob", password: "bob-password" })
    const noToken = await b.send("/notes", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "title=x&body=y"
    })
    expect(noToken.status).toBe(403)
    const { token } = await b.page()
    const crossSite = await b.send("/notes", {
      method: "POST",
      headers: {
        origin: "https://evil.example",
        "content-type": "application/x-www-form-urlencoded"
      },
      body: new URLSearchParams({ _csrf: token!, title: "x", body: "y" }).toString()
    })
    expect(crossSite.status).toBe(403)
  })

  it("limits login attempts to 5 a minute per client", async () => {
    const b = browser()
    const statuses: Array<number> = []
    for (let i = 0; i < 6; i++)
      statuses.push((await b.form("/login", { username: "bob", password: "guess" })).status)
    expect(statuses).toEqual([303, 303, 303, 303, 303, 429])
  })

  it("says so on a wrong password, and logs out", async () => {
    const b = browser()
    await b.form("/login", { username: "bob", password: "nope" })
    expect((await b.page()).html).toContain("Wrong user name or password")
    await b.form("/login", { username: "alice", password: "alice-password" })
    expect((await b.page()).html).toContain("Notes of Alice")
    expect((await b.form("/logout", {})).status).toBe(303)
    expect((await b.page()).html).toContain('action="/login"')
  })

  it("writing notes from a page needs a login", async () => {
    expect((await browser().form("/notes", { title: "x", body: "y" })).status).toBe(401)
  })
})
