/**
 * Signed values (session ids, signed cookies, CSRF tokens): what one key signs, any key of the
 * rotation verifies, and any other string is refused, whatever its length or characters.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Redacted from "effect/Redacted"
import * as fc from "fast-check"
import { sign, unsign } from "../src/internal/signing.ts"

const newest = Redacted.make("n".repeat(32))
const older = Redacted.make("o".repeat(40))
const stranger = Redacted.make("s".repeat(32))

describe("signing", () => {
  it("verifies with any key of the rotation, and refuses a foreign key's signature", () =>
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (value) => {
        expect(unsign(sign(value, [newest]), [newest, older])).toBe(value)
        expect(unsign(sign(value, [older]), [newest, older])).toBe(value)
        expect(unsign(sign(value, [stranger]), [newest, older])).toBeUndefined()
      })
    ))

  it("refuses every edit of the signature: replaced, added or removed characters, any Unicode", () =>
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.nat(),
        fc.oneof(fc.constant(""), fc.string({ unit: "grapheme", minLength: 1, maxLength: 3 })),
        fc.nat({ max: 3 }),
        (value, at, insert, remove) => {
          const signed = sign(value, [newest])
          const dot = signed.lastIndexOf(".")
          const signature = signed.slice(dot + 1)
          const i = at % (signature.length + 1)
          const edited = signature.slice(0, i) + insert + signature.slice(i + remove)
          fc.pre(edited !== signature)
          expect(unsign(`${signed.slice(0, dot)}.${edited}`, [newest, older])).toBeUndefined()
        }
      )
    ))

  it("refuses strings without a value or a signature", () => {
    for (const input of ["", ".", "abc", ".sig", "value."]) expect(unsign(input, [newest])).toBeUndefined()
  })
})
