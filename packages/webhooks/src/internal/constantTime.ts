/**
 * Constant-time comparison shared by the signature checks of the Signature and Receiver modules.
 *
 * @internal
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"

const hashKey = randomBytes(32)

const digest = (value: string | Uint8Array): Buffer => createHmac("sha256", hashKey).update(value).digest()

/**
 * @internal Compares two strings (or byte arrays) in time that depends on neither's content: both
 * are hashed under a random key first, so not even the length of the expected value leaks through an
 * early exit.
 */
export const constantTimeEqual = (a: string | Uint8Array, b: string | Uint8Array): boolean =>
  timingSafeEqual(digest(a), digest(b))
