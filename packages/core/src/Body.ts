/**
 * Request bodies — JSON, urlencoded forms, text, raw bytes and multipart uploads — read once, within
 * a byte limit and an optional deadline, checked for Content-Type and decoded by Schema into typed
 * 4xx errors. Read one in a handler with `Body.json(schema)`, or give a route a typed body service
 * with `Body.Json<Self>()(key, schema)` and `Body.middleware(Self)`.
 *
 * @since 0.1.0
 */
import * as ByteSize from "effect/ByteSize"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FileSystem from "effect/FileSystem"
import * as Inspectable from "effect/Inspectable"
import * as Path from "effect/Path"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import * as HttpMultipart from "effect/http/Multipart"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"

/**
 * What reading a body can fail with, besides the deadline: 415 for a media type the reader does not
 * take, 413 past a limit, 400 for a body that is malformed or does not match the Schema.
 *
 * @category errors
 */
export type Error = HttpError.UnsupportedMediaType | HttpError.PayloadTooLarge | HttpError.BadRequest

/**
 * `RequestTimeout` when the options set a `timeout`, otherwise nothing: the deadline error is only
 * in the types of readers that have a deadline.
 *
 * @category models
 */
export type TimeoutError<O> = [O] extends [never]
  ? never
  : "timeout" extends keyof O
    ? [Exclude<O[keyof O & "timeout"], undefined>] extends [never]
      ? never
      : HttpError.RequestTimeout
    : never

/**
 * Options of the JSON, form, text and bytes readers.
 *
 * @category models
 */
export interface Options {
  /**
   * The most bytes read; default 1 MiB. A larger Content-Length is refused before any byte is read,
   * and a body without one (chunked) stops being read once it passes the limit: 413 either way.
   */
  readonly limit?: ByteSize.Input | undefined
  /**
   * Media types taken: exact (`application/json`), a subtype wildcard (`text/*`), a suffix
   * (`application/*+json`), or the all-types wildcard, which also takes a body with no
   * Content-Type. Parameters such as `charset` do not take part. Each reader has its own default.
   */
  readonly accept?: ReadonlyArray<string> | undefined
  /** How long the client has to send the whole body; past it, 408. None by default. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Options of the multipart reader.
 *
 * @category models
 */
export interface MultipartOptions {
  /** The most bytes one file may have; default 10 MiB. */
  readonly maxFileSize?: ByteSize.Input | undefined
  /** The most bytes of the whole body; default 50 MiB. */
  readonly maxTotalSize?: ByteSize.Input | undefined
  /** The most files; default 10. */
  readonly maxFiles?: number | undefined
  /** The most non-file fields; default 100. */
  readonly maxFields?: number | undefined
  /** The most bytes one non-file field may have; default 1 MiB. */
  readonly maxFieldSize?: ByteSize.Input | undefined
  /** Where each request's temporary directory is made; default the OS temporary directory. */
  readonly directory?: string | undefined
  /** How long the client has to send the whole body; past it, 408. None by default. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The input type a form Schema decodes from: each field's value, or its values when repeated.
 *
 * @category models
 */
export type UrlEncoded = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

/**
 * A multipart body once read: fields as strings (arrays when repeated) and files, persisted to disk,
 * as arrays of `Multipart.PersistedFile`. Use `Multipart.SingleFileSchema` and
 * `Multipart.FilesSchema` from `effect/http/Multipart` in the Schema.
 *
 * @category models
 */
export type Persisted = HttpMultipart.Persisted

const MiB = 1024 * 1024
const defaultLimit = MiB
const jsonTypes: ReadonlyArray<string> = ["application/json", "application/*+json"]
const formTypes: ReadonlyArray<string> = ["application/x-www-form-urlencoded"]
const textTypes: ReadonlyArray<string> = ["text/*"]
const anyType: ReadonlyArray<string> = ["*/*"]
const multipartTypes: ReadonlyArray<string> = ["multipart/form-data"]

const bytesOf = (input: ByteSize.Input | undefined, fallback: number): number =>
  input === undefined ? fallback : Number(ByteSize.fromInputUnsafe(input))

// ---------------------------------------------------------------------------------------------------
// Content-Type
// ---------------------------------------------------------------------------------------------------

const mediaTypeOf = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const header = request.headers["content-type"]
  if (header === undefined) return undefined
  const type = header.split(";", 1)[0]!.trim().toLowerCase()
  return type === "" ? undefined : type
}

const charsetOf = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(request.headers["content-type"] ?? "")
  return match === null ? undefined : match[1]!.toLowerCase()
}

const matches = (mediaType: string | undefined, pattern: string): boolean => {
  const wanted = pattern.toLowerCase()
  if (wanted === "*/*") return true
  if (mediaType === undefined) return false
  const [type, subtype = ""] = wanted.split("/")
  const slash = mediaType.indexOf("/")
  if (slash === -1 || mediaType.slice(0, slash) !== type) return false
  const actual = mediaType.slice(slash + 1)
  if (subtype === "*") return true
  if (subtype.startsWith("*+")) return actual.endsWith(subtype.slice(1))
  return actual === subtype
}

// A compressed body would be read as garbage: refuse codings rather than guess.
const hasContentCoding = (request: HttpServerRequest.HttpServerRequest): boolean => {
  const coding = request.headers["content-encoding"]
  return coding !== undefined && coding.trim().toLowerCase() !== "identity" && coding.trim() !== ""
}

/** The 415 for a request whose media type is not accepted (or whose body is content-coded). */
const refusedType = (
  request: HttpServerRequest.HttpServerRequest,
  accepted: ReadonlyArray<string>
): HttpError.UnsupportedMediaType | undefined => {
  const type = mediaTypeOf(request)
  return hasContentCoding(request) || !accepted.some((pattern) => matches(type, pattern))
    ? new HttpError.UnsupportedMediaType({ accepted })
    : undefined
}

const checkType = (
  request: HttpServerRequest.HttpServerRequest,
  accepted: ReadonlyArray<string>
): Effect.Effect<void, HttpError.UnsupportedMediaType> => {
  const refused = refusedType(request, accepted)
  return refused === undefined ? Effect.void : Effect.fail(refused)
}

// ---------------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------------

// Effect caches a body read per request object; `modify` (TrustedProxy, …) makes a new object over
// the same source, whose reader would find the source drained. Keyed by the source, a body read
// here is shared by every object over it.
const bytesRead = new WeakMap<
  object,
  Exit.Exit<Uint8Array, HttpError.PayloadTooLarge | HttpError.BadRequest>
>()
const multipartRead = new WeakMap<object, Exit.Exit<Persisted, Error | HttpError.RequestTimeout>>()

const declaredLength = (request: HttpServerRequest.HttpServerRequest): number | undefined => {
  const header = request.headers["content-length"]
  return header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined
}

const isBodyTooLarge = (error: unknown): boolean => {
  const reason = (error as { readonly reason?: { readonly _tag?: unknown; readonly reason?: unknown } })
    .reason
  return reason?._tag === "RequestParseError" && reason.reason === "BodyTooLarge"
}

const storeExit =
  <A, E>(cache: WeakMap<object, Exit.Exit<A, E>>, source: object) =>
  (exit: Exit.Exit<A, E>) =>
    Effect.sync(() => {
      // An interrupted read (a deadline, a client gone) is abandoned, not an answer.
      if (!Exit.hasInterrupts(exit)) cache.set(source, exit)
    })

/**
 * The raw body, at most `limit` bytes. Goes through Effect's cached reader (so a middleware that
 * read the body first, by Effect's API or this one, does not leave the handler an empty body) with
 * Effect's `MaxBodySize` set to the limit, which stops reading a body past it.
 */
const readBytes = (
  request: HttpServerRequest.HttpServerRequest,
  limit: number
): Effect.Effect<Uint8Array, HttpError.PayloadTooLarge | HttpError.BadRequest> =>
  Effect.suspend(() => {
    const declared = declaredLength(request)
    if (declared !== undefined && declared > limit) {
      return Effect.fail(new HttpError.PayloadTooLarge({ limit }))
    }
    const earlier = bytesRead.get(request.source)
    const read: Effect.Effect<Uint8Array, HttpError.PayloadTooLarge | HttpError.BadRequest> =
      earlier ??
      request.arrayBuffer.pipe(
        Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(limit)),
        Effect.map((buffer) => new Uint8Array(buffer)),
        Effect.mapError((error) =>
          isBodyTooLarge(error)
            ? new HttpError.PayloadTooLarge({ limit })
            : new HttpError.BadRequest({ reason: "The body could not be read to its end" })
        ),
        Effect.onExit(storeExit(bytesRead, request.source))
      )
    return Effect.flatMap(read, (bytes) =>
      // Read earlier under a larger limit (or none): this reader's limit still holds.
      bytes.byteLength > limit ? Effect.fail(new HttpError.PayloadTooLarge({ limit })) : Effect.succeed(bytes)
    )
  })

const timeoutError = (duration: Duration.Duration) =>
  new HttpError.RequestTimeout({ reason: `the body did not arrive within ${Duration.format(duration)}` })

/** Fails with `RequestTimeout` past `timeout`, interrupting `self`. */
const withDeadline = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  timeout: Duration.Input | undefined
): Effect.Effect<A, E | HttpError.RequestTimeout, R> => {
  if (timeout === undefined) return self
  const duration = Duration.fromInputUnsafe(timeout)
  return Effect.timeoutOrElse(self, { duration, orElse: () => Effect.fail(timeoutError(duration)) })
}

/**
 * Fails with `RequestTimeout` past `timeout` but leaves `self` reading. Interrupting Effect's body
 * reader destroys the Node request, and with it the socket the 408 must go out on; left alone, the
 * read ends when the server tears the connection down after the response.
 */
const withDeadlineAbandoning = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  timeout: Duration.Input | undefined
): Effect.Effect<A, E | HttpError.RequestTimeout, R> => {
  if (timeout === undefined) return self
  const duration = Duration.fromInputUnsafe(timeout)
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.forkDetach(restore(self)), (fiber) =>
      restore(
        Effect.timeoutOrElse(Fiber.join(fiber), {
          duration,
          orElse: () => Effect.fail(timeoutError(duration))
        })
      ).pipe(
        // The client went away or the route was interrupted: then the read goes too.
        Effect.onInterrupt(() => Fiber.interrupt(fiber))
      )
    )
  )
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

const decodeText = (
  bytes: Uint8Array,
  decoder: TextDecoder = utf8
): Effect.Effect<string, HttpError.BadRequest> =>
  Effect.try({
    try: () => decoder.decode(bytes),
    catch: () => new HttpError.BadRequest({ reason: `The body is not valid ${decoder.encoding} text` })
  })

// Built once per reader: the options are resolved here, not on every request, and the steps are
// chained without a generator (the JSON path is the hot one).
const bodyBytes = (
  accepted: ReadonlyArray<string>,
  options: Options | undefined
): Effect.Effect<
  readonly [HttpServerRequest.HttpServerRequest, Uint8Array],
  Error | HttpError.RequestTimeout,
  HttpServerRequest.HttpServerRequest
> => {
  const accept = options?.accept ?? accepted
  const limit = bytesOf(options?.limit, defaultLimit)
  const timeout = options?.timeout
  return Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (
      request
    ): Effect.Effect<
      readonly [HttpServerRequest.HttpServerRequest, Uint8Array],
      Error | HttpError.RequestTimeout
    > => {
      const refused = refusedType(request, accept)
      if (refused !== undefined) return Effect.fail(refused)
      return Effect.map(
        withDeadlineAbandoning(readBytes(request, limit), timeout),
        (bytes) => [request, bytes] as const
      )
    }
  )
}

const decodeWith = <A, RD>(
  schema: Schema.ConstraintDecoder<A, RD>
): ((input: unknown) => Effect.Effect<A, HttpError.BadRequest, RD>) => {
  const decode = Schema.decodeUnknownEffect(schema)
  return (input) => Effect.mapError(decode(input, { errors: "all" }), HttpError.fromSchemaError)
}

// The parser's message may quote the input; say where instead.
const jsonReason = (error: unknown): string => {
  const message = error instanceof globalThis.Error ? error.message : ""
  if (/end of (JSON )?input/i.test(message)) return "The body is not valid JSON: it ends too early"
  const position = /at position (\d+)/.exec(message)
  return position === null
    ? "The body is not valid JSON"
    : `The body is not valid JSON: unexpected input at position ${position[1]}`
}

/** The body as JSON, or the 400 saying why not; synchronous, for the JSON reader's hot path. */
const parseJsonBytes = (bytes: Uint8Array): unknown => {
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return new HttpError.BadRequest({ reason: `The body is not valid ${utf8.encoding} text` })
  }
  if (text.trim() === "") return new HttpError.BadRequest({ reason: "The body is empty; JSON was expected" })
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    return new HttpError.BadRequest({ reason: jsonReason(error) })
  }
}

/**
 * Parses `application/x-www-form-urlencoded` strictly: `+` is a space, and a `%` not followed by a
 * valid UTF-8 escape is an error (the WHATWG parser would keep it as text and hide the mistake).
 * Repeated keys collect into an array, in order.
 */
const parseUrlEncoded = (text: string): Effect.Effect<UrlEncoded, HttpError.BadRequest> =>
  Effect.suspend(() => {
    const out: Record<string, string | Array<string>> = Object.create(null)
    const pairs = text.split("&")
    for (let index = 0; index < pairs.length; index++) {
      const pair = pairs[index]!
      if (pair === "") continue
      const eq = pair.indexOf("=")
      let key: string
      let value: string
      try {
        key = decodeURIComponent((eq === -1 ? pair : pair.slice(0, eq)).replaceAll("+", " "))
        value = eq === -1 ? "" : decodeURIComponent(pair.slice(eq + 1).replaceAll("+", " "))
      } catch {
        return Effect.fail(
          new HttpError.BadRequest({
            reason: `The form is not valid percent-encoding (field ${index + 1})`
          })
        )
      }
      const existing = out[key]
      if (existing === undefined) out[key] = value
      else if (typeof existing === "string") out[key] = [existing, value]
      else existing.push(value)
    }
    return Effect.succeed(out)
  })

// ---------------------------------------------------------------------------------------------------
// Handler-level readers
// ---------------------------------------------------------------------------------------------------

/**
 * Reads a JSON body (`application/json` or `application/*+json`, any `charset` parameter) and
 * decodes it with `schema`, reporting every failing field.
 *
 * @example
 * ```ts
 * const create = Route.post("/notes", Effect.gen(function* () {
 *   const input = yield* Body.json(NoteInput, { limit: "64 KiB" })
 *   return HttpServerResponse.jsonUnsafe(yield* notes.create(input), { status: 201 })
 * }))
 * ```
 * @category readers
 */
export const json = <A, RD = never, const O extends Options = never>(
  schema: Schema.ConstraintDecoder<A, RD>,
  options?: O
): Effect.Effect<A, Error | TimeoutError<O>, HttpServerRequest.HttpServerRequest | RD> => {
  const decode = decodeWith(schema)
  // JSON.parse never yields a BadRequest, so the instance check cannot mistake a value for an error.
  return Effect.flatMap(bodyBytes(jsonTypes, options), ([, bytes]) => {
    const value = parseJsonBytes(bytes)
    return value instanceof HttpError.BadRequest ? Effect.fail(value) : decode(value)
  }) as any
}

/**
 * Reads an `application/x-www-form-urlencoded` body and decodes it with `schema` (whose fields
 * decode from strings: `Schema.NumberFromString`, …). Invalid percent-encoding is a 400.
 *
 * @category readers
 */
export const form = <A, I extends UrlEncoded, RD = never, const O extends Options = never>(
  schema: Schema.ConstraintCodec<A, I, RD, unknown>,
  options?: O
): Effect.Effect<A, Error | TimeoutError<O>, HttpServerRequest.HttpServerRequest | RD> => {
  const decode = decodeWith(schema)
  return Effect.gen(function* () {
    const [, bytes] = yield* bodyBytes(formTypes, options)
    const fields = yield* parseUrlEncoded(yield* decodeText(bytes))
    return yield* decode(fields)
  }) as any
}

/**
 * Reads a text body (`text/*` by default), decoded with its `charset` (UTF-8 when none). A charset
 * the runtime does not know is a 415; bytes invalid in the charset a 400.
 *
 * @category readers
 */
export const text = <const O extends Options = never>(
  options?: O
): Effect.Effect<string, Error | TimeoutError<O>, HttpServerRequest.HttpServerRequest> =>
  Effect.gen(function* () {
    const [request, bytes] = yield* bodyBytes(textTypes, options)
    const charset = charsetOf(request)
    let decoder = utf8
    if (charset !== undefined) {
      try {
        decoder = new TextDecoder(charset, { fatal: true })
      } catch {
        return yield* new HttpError.UnsupportedMediaType({ accepted: options?.accept ?? textTypes })
      }
    }
    return yield* decodeText(bytes, decoder)
  }) as any

/**
 * Reads the body as raw bytes, whatever its media type (unless `accept` narrows it).
 *
 * @category readers
 */
export const bytes = <const O extends Options = never>(
  options?: O
): Effect.Effect<Uint8Array, Error | TimeoutError<O>, HttpServerRequest.HttpServerRequest> =>
  Effect.map(bodyBytes(anyType, options), ([, body]) => body) as any

// ---------------------------------------------------------------------------------------------------
// Multipart
// ---------------------------------------------------------------------------------------------------

class PersistedFileImpl extends Inspectable.Class implements HttpMultipart.PersistedFile {
  readonly [HttpMultipart.TypeId]: typeof HttpMultipart.TypeId = HttpMultipart.TypeId
  readonly _tag = "PersistedFile" as const
  readonly key: string
  readonly name: string
  readonly contentType: string
  readonly path: string
  constructor(key: string, name: string, contentType: string, path: string) {
    super()
    this.key = key
    this.name = name
    this.contentType = contentType
    this.path = path
  }
  toJSON(): unknown {
    return {
      _id: "PersistedFile",
      key: this.key,
      name: this.name,
      contentType: this.contentType,
      path: this.path
    }
  }
}

interface Limits {
  readonly maxFileSize: number
  readonly maxTotalSize: number
  readonly maxFiles: number
  readonly maxFields: number
  readonly maxFieldSize: number
}

const limitsOf = (options: MultipartOptions | undefined): Limits => ({
  maxFileSize: bytesOf(options?.maxFileSize, 10 * MiB),
  maxTotalSize: bytesOf(options?.maxTotalSize, 50 * MiB),
  maxFiles: options?.maxFiles ?? 10,
  maxFields: options?.maxFields ?? 100,
  maxFieldSize: bytesOf(options?.maxFieldSize, MiB)
})

const fromMultipartError = (error: HttpMultipart.MultipartError, limits: Limits): Error => {
  switch (error.reason._tag) {
    case "FileTooLarge":
      return new HttpError.PayloadTooLarge({ limit: limits.maxFileSize })
    case "FieldTooLarge":
      return new HttpError.PayloadTooLarge({ limit: limits.maxFieldSize })
    case "BodyTooLarge":
      return new HttpError.PayloadTooLarge({ limit: limits.maxTotalSize })
    case "TooManyParts":
      return new HttpError.PayloadTooLarge({ limit: limits.maxFields })
    case "InternalError":
      return new HttpError.BadRequest({ reason: "The body could not be read to its end" })
    case "Parse":
      return new HttpError.BadRequest({ reason: "The body is not valid multipart/form-data" })
  }
}

// A body another reader drained cannot be streamed again.
const isDrained = (source: object): boolean =>
  bytesRead.has(source) ||
  (source as { readonly bodyUsed?: unknown }).bodyUsed === true ||
  (source as { readonly readableDidRead?: unknown }).readableDidRead === true

// Effect's request implementations (web and Node) keep the effect of `request.multipart` here once it
// ran: then the body was persisted by Effect and is read back from there, not from the socket.
const persistedByEffect = (request: HttpServerRequest.HttpServerRequest): boolean =>
  (request as unknown as { readonly multipartEffect?: unknown }).multipartEffect !== undefined

const partsOf = (
  request: HttpServerRequest.HttpServerRequest,
  limits: Limits
): Stream.Stream<
  HttpMultipart.Part,
  HttpMultipart.MultipartError | HttpError.PayloadTooLarge | HttpError.BadRequest
> =>
  isDrained(request.source)
    ? // Drained by a reader that kept the bytes (this module's, or Effect's cached `arrayBuffer`).
      Stream.fromEffect(readBytes(request, limits.maxTotalSize)).pipe(
        Stream.pipeThroughChannel(HttpMultipart.makeChannel(request.headers))
      )
    : request.multipartStream

type FileSystemError = Effect.Error<ReturnType<FileSystem.FileSystem["makeTempDirectory"]>>

const mapPersistError =
  (limits: Limits) =>
  (error: Error | HttpMultipart.MultipartError | FileSystemError): Effect.Effect<never, Error> =>
    HttpMultipart.isMultipartError(error)
      ? Effect.fail(fromMultipartError(error, limits))
      : error._tag === "PlatformError"
        ? // The server's disk failing is not the client's mistake: a 500.
          Effect.die(error)
        : Effect.fail(error)

const withLimits = <A, E, R>(self: Effect.Effect<A, E, R>, limits: Limits): Effect.Effect<A, E, R> =>
  self.pipe(
    Effect.provideService(HttpMultipart.MaxFileSize, ByteSize.bytes(limits.maxFileSize)),
    Effect.provideService(HttpMultipart.MaxFieldSize, ByteSize.bytes(limits.maxFieldSize)),
    Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(limits.maxTotalSize)),
    // Effect reads `application/json` parts as fields by default; here a part is a file when it has
    // a file name, whatever its type, so an uploaded .json file is a file.
    Effect.provideService(HttpMultipart.FieldMimeTypes, [])
  )

const persist = (
  request: HttpServerRequest.HttpServerRequest,
  limits: Limits,
  directory: string | undefined
): Effect.Effect<Persisted, Error, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* fs.makeTempDirectoryScoped(
      directory === undefined ? { prefix: "strata-upload-" } : { directory, prefix: "strata-upload-" }
    )
    const persisted: Record<string, string | Array<string> | Array<HttpMultipart.PersistedFile>> =
      Object.create(null)
    let files = 0
    let fields = 0
    yield* Stream.runForEach(
      partsOf(request, limits),
      (part): Effect.Effect<void, Error | HttpMultipart.MultipartError | FileSystemError> => {
        if (part._tag === "Field") {
          if (++fields > limits.maxFields)
            return Effect.fail(new HttpError.PayloadTooLarge({ limit: limits.maxFields }))
          const existing = persisted[part.key]
          if (existing === undefined) persisted[part.key] = part.value
          else if (typeof existing === "string") persisted[part.key] = [existing, part.value]
          else (existing as Array<string>).push(part.value)
          return Effect.void
        }
        // A file input left empty is sent as a part without a file name.
        if (part.name === "") return Stream.runDrain(part.content)
        if (++files > limits.maxFiles)
          return Effect.fail(new HttpError.PayloadTooLarge({ limit: limits.maxFiles }))
        // Named by position, never by the client's file name, which is kept in `name`.
        const file = new PersistedFileImpl(
          part.key,
          part.name,
          part.contentType,
          path.join(dir, `file-${files}`)
        )
        const existing = persisted[part.key]
        if (Array.isArray(existing)) (existing as Array<HttpMultipart.PersistedFile>).push(file)
        else persisted[part.key] = [file]
        return Stream.run(part.content, fs.sink(file.path))
      }
    ).pipe((self) => withLimits(self, limits))
    return persisted as Persisted
  }).pipe(Effect.catch(mapPersistError(limits)))

const encoder = new TextEncoder()

// A middleware read the body first with Effect's `request.multipart` (a CSRF check reading its
// token field, …): take what it persisted, and hold it to this reader's limits.
const reusePersisted = (
  request: HttpServerRequest.HttpServerRequest,
  limits: Limits
): Effect.Effect<Persisted, Error, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const persisted = yield* withLimits(request.multipart, limits)
    const items = Object.values(persisted).flatMap(
      (value): ReadonlyArray<string | HttpMultipart.PersistedFile> =>
        typeof value === "string" ? [value] : value
    )
    const fields = items.filter((item): item is string => typeof item === "string")
    const files = items.filter((item): item is HttpMultipart.PersistedFile => typeof item !== "string")
    const fieldSizes = fields.map((field) => encoder.encode(field).byteLength)
    const fileSizes: Array<number> = []
    for (const file of files) fileSizes.push(Number((yield* fs.stat(file.path)).size))
    const total = [...fieldSizes, ...fileSizes].reduce((a, b) => a + b, 0)
    const exceeded =
      fields.length > limits.maxFields
        ? limits.maxFields
        : fieldSizes.some((size) => size > limits.maxFieldSize)
          ? limits.maxFieldSize
          : files.length > limits.maxFiles
            ? limits.maxFiles
            : fileSizes.some((size) => size > limits.maxFileSize)
              ? limits.maxFileSize
              : total > limits.maxTotalSize
                ? limits.maxTotalSize
                : undefined
    if (exceeded !== undefined) return yield* new HttpError.PayloadTooLarge({ limit: exceeded })
    return persisted
  }).pipe(Effect.catch(mapPersistError(limits)))

const readMultipart = (
  options: MultipartOptions | undefined
): Effect.Effect<
  Persisted,
  Error | HttpError.RequestTimeout,
  HttpServerRequest.HttpServerRequest | Scope.Scope | FileSystem.FileSystem | Path.Path
> =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const earlier = multipartRead.get(request.source)
    if (earlier !== undefined) return yield* earlier
    yield* checkType(request, multipartTypes)
    const limits = limitsOf(options)
    const declared = declaredLength(request)
    if (declared !== undefined && declared > limits.maxTotalSize) {
      return yield* new HttpError.PayloadTooLarge({ limit: limits.maxTotalSize })
    }
    // Files live in a scope of their own under the request's: removed at once when reading fails,
    // otherwise when the request is done.
    const files = yield* Scope.fork(yield* Scope.Scope)
    const read = persistedByEffect(request)
      ? reusePersisted(request, limits)
      : persist(request, limits, options?.directory)
    const exit = yield* read.pipe(
      (self) => withDeadline(self, options?.timeout),
      Scope.provide(files),
      Effect.exit
    )
    if (Exit.isFailure(exit)) yield* Scope.close(files, exit)
    yield* storeExit(multipartRead, request.source)(exit)
    return yield* exit
  })

/**
 * Reads a `multipart/form-data` body: files are streamed to a temporary directory (removed when the
 * request's scope closes, or at once when reading fails) within per-file, total, file-count and
 * field limits, then the whole (fields and `PersistedFile`s) is decoded with `schema` if given.
 * Needs Effect's `FileSystem` and `Path` (`NodeServices.layer`) from the app layer.
 *
 * @example
 * ```ts
 * const Upload = Schema.Struct({ title: Schema.String, file: Multipart.SingleFileSchema })
 * const upload = yield* Body.multipart(Upload, { maxFileSize: "5 MiB", maxFiles: 1 })
 * ```
 * @category readers
 */
export const multipart: {
  <const O extends MultipartOptions = never>(
    schema?: undefined,
    options?: O
  ): Effect.Effect<
    Persisted,
    Error | TimeoutError<O>,
    HttpServerRequest.HttpServerRequest | Scope.Scope | FileSystem.FileSystem | Path.Path
  >
  <A, I extends Partial<Persisted>, RD = never, const O extends MultipartOptions = never>(
    schema: Schema.ConstraintCodec<A, I, RD, unknown>,
    options?: O
  ): Effect.Effect<
    A,
    Error | TimeoutError<O>,
    HttpServerRequest.HttpServerRequest | Scope.Scope | FileSystem.FileSystem | Path.Path | RD
  >
} = (schema?: Schema.ConstraintDecoder<unknown, unknown>, options?: MultipartOptions): any => {
  const decode = schema === undefined ? undefined : decodeWith(schema)
  const read = readMultipart(options)
  return decode === undefined ? read : Effect.flatMap(read, decode)
}

// ---------------------------------------------------------------------------------------------------
// Typed body services
// ---------------------------------------------------------------------------------------------------

/**
 * The kinds of body a service reads.
 *
 * @category models
 */
export type Kind = "json" | "form" | "text" | "bytes" | "multipart"

/**
 * How a body service reads its value; `Body.middleware` runs it with the options it is given.
 *
 * @category models
 */
export interface Reader<A, O, R> {
  readonly kind: Kind
  readonly read: (options?: O) => Effect.Effect<A, Error | HttpError.RequestTimeout, R>
}

/**
 * The class a body service extends: a request-scoped service whose value is the decoded body, so a
 * handler reads it with `yield*` and only compiles behind `Body.middleware` for it.
 *
 * @category models
 */
export interface ServiceClass<Self, Key extends string, A, O, R> extends Middleware.ServiceClass<
  Self,
  Key,
  A
> {
  readonly body: Reader<A, O, R>
}

const makeService = <Self, Key extends string, A, O, R>(
  key: Key,
  kind: Kind,
  read: (options?: O) => Effect.Effect<A, Error | HttpError.RequestTimeout, any>
): ServiceClass<Self, Key, A, O, R> => {
  const service = Middleware.Service<Self, A>()(key) as any
  service.body = { kind, read } satisfies Reader<A, O, unknown>
  return service
}

/**
 * Declares a JSON body service: its value is the body decoded by `schema`.
 *
 * @example
 * ```ts
 * class CreateUser extends Body.Json<CreateUser>()("app/CreateUser", Schema.Struct({ name: Schema.String })) {}
 * const create = Route.post("/users", Effect.gen(function* () {
 *   const input = yield* CreateUser
 *   return HttpServerResponse.jsonUnsafe(input, { status: 201 })
 * }))
 * Router.group("", [create]).pipe(Router.use(Body.middleware(CreateUser, { limit: "16 KiB" })))
 * ```
 * @category constructors
 */
export const Json =
  <Self>() =>
  <const Key extends string, A, RD = never>(
    key: Key,
    schema: Schema.ConstraintDecoder<A, RD>
  ): ServiceClass<Self, Key, A, Options, RD> =>
    makeService(key, "json", (options?: Options) => json(schema, options))

/**
 * Declares an urlencoded form body service: its value is the form decoded by `schema`.
 *
 * @category constructors
 */
export const Form =
  <Self>() =>
  <const Key extends string, A, I extends UrlEncoded, RD = never>(
    key: Key,
    schema: Schema.ConstraintCodec<A, I, RD, unknown>
  ): ServiceClass<Self, Key, A, Options, RD> =>
    makeService(key, "form", (options?: Options) => form(schema, options))

/**
 * Declares a text body service.
 *
 * @category constructors
 */
export const Text =
  <Self>() =>
  <const Key extends string>(key: Key): ServiceClass<Self, Key, string, Options, never> =>
    makeService(key, "text", (options?: Options) => text(options))

/**
 * Declares a raw body service (a `Uint8Array`).
 *
 * @category constructors
 */
export const Bytes =
  <Self>() =>
  <const Key extends string>(key: Key): ServiceClass<Self, Key, Uint8Array, Options, never> =>
    makeService(key, "bytes", (options?: Options) => bytes(options))

/**
 * Declares a multipart body service: its value is the persisted form, decoded by `schema` if given.
 * Its files are removed when the request is done.
 *
 * @category constructors
 */
export const Multipart =
  <Self>() =>
  <const Key extends string, A = Persisted, I extends Partial<Persisted> = Persisted, RD = never>(
    key: Key,
    schema?: Schema.ConstraintCodec<A, I, RD, unknown>
  ): ServiceClass<Self, Key, A, MultipartOptions, RD | FileSystem.FileSystem | Path.Path> =>
    makeService(
      key,
      "multipart",
      (options?: MultipartOptions) =>
        (schema === undefined ? multipart(undefined, options) : multipart(schema, options)) as Effect.Effect<
          A,
          Error | HttpError.RequestTimeout,
          unknown
        >
    )

/**
 * The middleware that reads a body service's value and provides it to the route. It raises 415,
 * 413 and 400 (`UnsupportedMediaType`, `PayloadTooLarge`, `BadRequest`), and 408
 * (`RequestTimeout`) only when given a `timeout`. Use it on the routes that take that body: a
 * router of one route, `Router.group("", [route])`, when its siblings take other bodies.
 *
 * @example
 * ```ts
 * Router.group("/users", [create]).pipe(Router.use(Body.middleware(CreateUser, { limit: "16 KiB", timeout: "10 seconds" })))
 * ```
 * @category middleware
 */
export const middleware = <Self, Key extends string, A, O, R, const P extends O = never>(
  service: ServiceClass<Self, Key, A, O, R>,
  options?: P
): Middleware.Middleware<Self, R, Error | TimeoutError<P>> => {
  const timeout = (options as { readonly timeout?: unknown } | undefined)?.timeout
  const raises =
    timeout === undefined
      ? (["UnsupportedMediaType", "PayloadTooLarge", "BadRequest"] as const)
      : (["UnsupportedMediaType", "PayloadTooLarge", "BadRequest", "RequestTimeout"] as const)
  const key = service as unknown as Middleware.ServiceClass<unknown, string, A>
  return Middleware.make({
    name: `body(${service.body.kind})`,
    provides: [key],
    raises,
    apply: (next) =>
      Effect.flatMap(service.body.read(options), (value) => Effect.provideService(next, key, value))
  }) as any
}
