/**
 * The REST example: a notes API whose routes read the current user from middleware, decode bodies
 * with Schema, and answer every error with a typed response.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpError, Logger, RequestId, Route, Router } from "@strata/core"
import { Admin, admin, bearer, CurrentUser } from "./Auth.ts"
import { Notes } from "./Notes.ts"

class NoteNotFound extends HttpError.Class("NoteNotFound", { status: 404, message: "No such note" })<{
  readonly id: string
}> {}

const NoteInput = Schema.Struct({
  title: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(200)),
  body: Schema.String.check(Schema.isMaxLength(10_000))
})

const noteId = Effect.map(HttpRouter.params, (params) => params["id"] ?? "")

const listNotes = Route.get(
  "/notes",
  Effect.gen(function* () {
    const user = yield* CurrentUser
    const notes = yield* Notes
    return HttpServerResponse.jsonUnsafe(yield* notes.list(user.id))
  })
)

const createNote = Route.post(
  "/notes",
  Effect.gen(function* () {
    const user = yield* CurrentUser
    const input = yield* HttpServerRequest.schemaBodyJson(NoteInput, { errors: "all" }).pipe(
      HttpError.mapSchemaError
    )
    const note = yield* (yield* Notes).create({ owner: user.id, ...input })
    return HttpServerResponse.jsonUnsafe(note, { status: 201 })
  })
)

const getNote = Route.get(
  "/notes/:id",
  Effect.gen(function* () {
    const user = yield* CurrentUser
    const id = yield* noteId
    const note = yield* (yield* Notes).find(id)
    // Someone else's note is as absent as a missing one: no hint that the id exists.
    if (note === undefined || note.owner !== user.id) return yield* new NoteNotFound({ id })
    return HttpServerResponse.jsonUnsafe(note)
  })
)

const deleteAnyNote = Route.del(
  "/notes/:id",
  Effect.gen(function* () {
    const by = yield* Admin
    const id = yield* noteId
    if (!(yield* (yield* Notes).remove(id))) return yield* new NoteNotFound({ id })
    yield* Effect.logInfo("note deleted").pipe(Effect.annotateLogs({ noteId: id, by: by.id }))
    return HttpServerResponse.empty({ status: 204 })
  })
)

const index = Route.get(
  "/",
  HttpServerResponse.jsonUnsafe({
    name: "Strata notes example",
    routes: [
      "GET /health",
      "GET /api/notes",
      "POST /api/notes",
      "GET /api/notes/:id",
      "DELETE /api/admin/notes/:id"
    ]
  })
)

const health = Route.get("/health", HttpServerResponse.text("ok"))

const api = Router.group("/api", [
  listNotes,
  createNote,
  getNote,
  Router.group("/admin", [deleteAnyNote]).pipe(Router.use(admin))
]).pipe(Router.use(bearer))

/**
 * The whole app. `requireEverywhere` makes any new route that forgets auth a compile error (and a
 * start-up error), except the two public ones.
 */
export const app = Router.requireEverywhere(
  Router.make([index, health, api]).pipe(Router.use(RequestId.middleware(), Logger.middleware())),
  CurrentUser,
  { except: ["GET /", "GET /health"] }
)
