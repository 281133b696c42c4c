/**
 * Property tests of the notes API with `@strata/core`'s kit: valid requests generated from the body
 * Schema, hostile requests against every route, and a model-based test of create, read, list and
 * delete against a plain Map.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { RateLimit, Router, Session } from "@strata/core"
import * as Arbitraries from "@strata/core/Arbitraries"
import * as Property from "@strata/core/Property"
import * as Testing from "@strata/core/Testing"
import { app, NoteInput } from "../src/app.ts"
import * as Notes from "../src/Notes.ts"
import * as Users from "../src/Users.ts"

const Note = Schema.Struct({
  id: Schema.String,
  owner: Schema.String,
  title: Schema.String,
  body: Schema.String
})

const tokens = { alice: "alice-token", bob: "bob-token" } as const
type Who = keyof typeof tokens
const as = (who: Who) => ({ authorization: `Bearer ${tokens[who]}` })

// The directory hashes the demo passwords when it is built (scrypt, slow on purpose): build it once,
// and give each client fresh notes, sessions and rate-limit counters around it.
const users = await Effect.runPromise(
  Effect.provide(
    Effect.gen(function* () {
      return yield* Users.Users
    }),
    Users.layer
  )
)
const services = () =>
  Layer.mergeAll(
    Notes.layerMemory,
    Layer.succeed(Users.Users, users),
    Session.layerMemory(),
    RateLimit.layerMemory()
  )

/** The system under test: the whole app behind an in-process client, built afresh per case. */
class Api extends Context.Service<Api, Testing.Client<typeof app>>()("example/test/Api") {}
const ApiLive = Layer.effect(Api)(
  Effect.acquireRelease(
    Effect.sync(() => Testing.client(app, services())),
    (client) => Effect.promise(() => client.dispose())
  )
)

const send = <A>(f: (api: Testing.Client<typeof app>) => Promise<A>) =>
  Effect.flatMap(Api, (api) => Effect.promise(() => f(api)))

describe("rest-api example: properties", () => {
  it("a valid create-note request always gets 201, and the note reads back", () =>
    Property.effect(
      [
        Testing.requests(app, {
          route: "POST /api/notes",
          body: NoteInput,
          headers: fc.constantFrom(as("alice"), as("bob"))
        })
      ],
      ([request]) =>
        Effect.gen(function* () {
          const created = yield* send((api) => api.send(request))
          expect(created.status).toBe(201)
          const note = created.json(Note)
          const owner = request.headers["authorization"] === as("alice").authorization ? "alice" : "bob"
          expect(note).toEqual({ id: note.id, owner, ...request.input })
          const read = yield* send((api) =>
            api.get(`/api/notes/${note.id}`, {
              headers: { authorization: request.headers["authorization"]! }
            })
          )
          expect(read.status).toBe(200)
          expect(read.json(Note)).toEqual(note)
        }),
      { layer: ApiLive }
    ))

  // Each route with fresh stores, once as a member and once as an admin: the API allows a user 100
  // requests a minute, so 90 cases each still reach the handlers rather than the rate limit.
  describe("hostile requests never get a 5xx", () => {
    for (const route of Router.manifest(app)) {
      const id = `${route.method} ${route.path}` as Router.RouteId<typeof app>
      it(id, async () => {
        for (const who of ["bob", "alice"] as const) {
          await Testing.neverFails(
            app,
            services(),
            Testing.hostile(app, {
              route: id,
              headers: { ...as(who), origin: "http://test" },
              body: NoteInput
            }),
            { numRuns: 90 }
          )
        }
      })
    }
  })

  it("create, read, list and delete agree with a Map of notes", () => {
    interface Model {
      readonly notes: Map<string, { readonly owner: Who; readonly title: string; readonly body: string }>
    }
    const who = fc.constantFrom<Who>("alice", "bob")
    const idOf = (model: Model, pick: number) => {
      const ids = [...model.notes.keys()]
      return ids.length === 0 ? String(pick) : ids[pick % ids.length]!
    }
    const expectRead = (model: Model, user: Who, id: string, status: number, body: () => unknown) => {
      const note = model.notes.get(id)
      // Someone else's note is as absent as a missing one.
      if (note === undefined || note.owner !== user) return expect(status).toBe(404)
      expect(status).toBe(200)
      expect(body()).toEqual({ id, ...note })
    }
    const create = fc.tuple(who, Arbitraries.arbitrary(NoteInput)).map(([user, input]) =>
      Property.command({
        name: `create(${user}, ${JSON.stringify(input).slice(0, 60)})`,
        run: (model: Model) =>
          Effect.gen(function* () {
            const res = yield* send((api) => api.post("/api/notes", { json: input, headers: as(user) }))
            expect(res.status).toBe(201)
            const note = res.json(Note)
            expect(model.notes.has(note.id)).toBe(false)
            expect(note).toEqual({ id: note.id, owner: user, ...input })
            model.notes.set(note.id, { owner: user, ...input })
          })
      })
    )
    const read = fc.tuple(who, fc.nat()).map(([user, pick]) =>
      Property.command({
        name: `read(${user}, #${pick})`,
        run: (model: Model) =>
          Effect.gen(function* () {
            const id = idOf(model, pick)
            const res = yield* send((api) => api.get(`/api/notes/${id}`, { headers: as(user) }))
            expectRead(model, user, id, res.status, () => res.json(Note))
          })
      })
    )
    const readAnyId = fc
      .tuple(who, fc.oneof(fc.nat({ max: 30 }).map(String), fc.string({ minLength: 1, unit: "grapheme" })))
      .map(([user, id]) =>
        Property.command({
          name: `readId(${user}, ${JSON.stringify(id)})`,
          run: (model: Model) =>
            Effect.gen(function* () {
              const res = yield* send((api) =>
                api.get(`/api/notes/${encodeURIComponent(id)}`, { headers: as(user) })
              )
              // "." and ".." are path segments the URL resolves, not ids.
              if (id === "." || id === "..") return expect(res.status).toBeLessThan(500)
              expectRead(model, user, id, res.status, () => res.json(Note))
            })
        })
      )
    const list = who.map((user) =>
      Property.command({
        name: `list(${user})`,
        run: (model: Model) =>
          Effect.gen(function* () {
            const res = yield* send((api) => api.get("/api/notes", { headers: as(user) }))
            expect(res.status).toBe(200)
            const mine = [...model.notes].filter(([, n]) => n.owner === user).map(([id, n]) => ({ id, ...n }))
            expect(res.json(Schema.Array(Note))).toEqual(mine)
          })
      })
    )
    const remove = fc.tuple(who, fc.nat()).map(([user, pick]) =>
      Property.command({
        name: `delete(${user}, #${pick})`,
        run: (model: Model) =>
          Effect.gen(function* () {
            const id = idOf(model, pick)
            const res = yield* send((api) => api.delete(`/api/admin/notes/${id}`, { headers: as(user) }))
            // Only the admin deletes, anyone's note.
            if (user !== "alice") return expect(res.status).toBe(403)
            expect(res.status).toBe(model.notes.has(id) ? 204 : 404)
            model.notes.delete(id)
          })
      })
    )
    return Property.commands({
      model: (): Model => ({ notes: new Map() }),
      commands: [create, read, readAnyId, list, remove],
      layer: ApiLive,
      maxCommands: 30
    })
  })
})
