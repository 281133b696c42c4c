import { afterAll, describe, expect, it } from "@effect/vitest"
import { App } from "@strata/core"
import { app } from "../src/app.ts"
import * as Notes from "../src/Notes.ts"

const { handler, dispose } = App.toWebHandler(app, Notes.layerMemory)
afterAll(() => dispose())

const as = (token: string | undefined, init: RequestInit = {}) => ({
  ...init,
  headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...init.headers }
})

const post = (token: string, body: unknown) =>
  handler(
    new Request(
      "http://x/api/notes",
      as(token, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body)
      })
    )
  )

describe("rest-api example", () => {
  it("keeps the public routes public and everything else behind auth", async () => {
    expect((await handler(new Request("http://x/health"))).status).toBe(200)
    const res = await handler(new Request("http://x/api/notes"))
    expect(res.status).toBe(401)
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="notes"')
    expect(res.headers.get("x-request-id")).toBeTruthy()
  })

  it("creates, lists and reads a user's notes, and hides them from others", async () => {
    const created = await post("bob-token", { title: "groceries", body: "milk" })
    expect(created.status).toBe(201)
    const note = (await created.json()) as { id: string; owner: string }
    expect(note.owner).toBe("bob")
    const list = await handler(new Request("http://x/api/notes", as("bob-token")))
    expect(await list.json()).toEqual([{ id: note.id, owner: "bob", title: "groceries", body: "milk" }])
    const foreign = await handler(new Request(`http://x/api/notes/${note.id}`, as("alice-token")))
    expect(foreign.status).toBe(404)
    expect(await foreign.json()).toEqual({ error: "NoteNotFound", message: "No such note" })
  })

  it("answers bad bodies with 400 and a field-level report", async () => {
    const invalid = await post("bob-token", { title: "", body: 3 })
    expect(invalid.status).toBe(400)
    const report = (await invalid.json()) as { error: string; issues: Array<{ path: string }> }
    expect(report.error).toBe("BadRequest")
    expect(report.issues.map((i) => i.path).toSorted()).toEqual(["body", "title"])
    const malformed = await post("bob-token", "{not json")
    expect(malformed.status).toBe(400)
  })

  it("lets only admins delete any note", async () => {
    const note = (await (await post("bob-token", { title: "t", body: "b" })).json()) as { id: string }
    const byMember = await handler(
      new Request(`http://x/api/admin/notes/${note.id}`, as("bob-token", { method: "DELETE" }))
    )
    expect(byMember.status).toBe(403)
    const byAdmin = await handler(
      new Request(`http://x/api/admin/notes/${note.id}`, as("alice-token", { method: "DELETE" }))
    )
    expect(byAdmin.status).toBe(204)
    const again = await handler(
      new Request(`http://x/api/admin/notes/${note.id}`, as("alice-token", { method: "DELETE" }))
    )
    expect(again.status).toBe(404)
  })
})
