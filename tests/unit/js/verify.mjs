// Independent Node check of APIXX webhook signatures, written from the vendor's documented
// algorithm: HMAC-SHA256(secret, t + "." + rawBody), hex, timing-safe compare.
//
//   node verify.mjs verify <secret> <signature-header> [--now=SECONDS] [--tolerance=300] < body
//       exit 0 valid, 1 invalid (reason on stderr), 2 usage
//   node verify.mjs sign <secret> <t> < body      prints "t=<t>,v1=<hex>"
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";

const HEX_DIGEST = /^[0-9a-f]{64}$/;

function hmacHex(secret, t, rawBody) {
  return createHmac("sha256", secret)
    .update(Buffer.concat([Buffer.from(`${t}.`, "utf8"), rawBody]))
    .digest("hex");
}

function parseHeader(header) {
  let t = null;
  const signatures = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) return null;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t") {
      if (t !== null || !/^[0-9]{1,12}$/.test(value)) return null;
      t = value;
    } else if (key === "v1") {
      signatures.push(value.toLowerCase());
    }
  }
  return t === null || signatures.length === 0 ? null : { t, signatures };
}

function safeEqualHex(a, b) {
  const left = Buffer.from(a, "utf8");
  const right = Buffer.from(b, "utf8");
  // timingSafeEqual throws on different lengths, so compare lengths first
  return left.length === right.length && timingSafeEqual(left, right);
}

function verify(secret, header, rawBody, now, tolerance) {
  const parsed = parseHeader(header);
  if (parsed === null) return "malformed";
  const expected = hmacHex(secret, parsed.t, rawBody);
  const ok = parsed.signatures.filter((s) => HEX_DIGEST.test(s)).some((s) => safeEqualHex(s, expected));
  if (!ok) return "mismatch";
  const t = Number(parsed.t);
  if (t < now - tolerance) return "too_old";
  if (t > now + tolerance) return "in_future";
  return null;
}

function option(args, name, fallback) {
  const hit = args.find((a) => a.startsWith(`--${name}=`));
  return hit === undefined ? fallback : Number(hit.slice(name.length + 3));
}

function main(argv) {
  const [mode, secret, third, ...rest] = argv;
  if (!secret || third === undefined || !["verify", "sign"].includes(mode)) {
    process.stderr.write("usage: verify.mjs verify <secret> <header> | sign <secret> <t> < body\n");
    return 2;
  }
  const rawBody = readFileSync(0); // stdin as raw bytes: the signature covers bytes, not text
  if (mode === "sign") {
    process.stdout.write(`t=${third},v1=${hmacHex(secret, third, rawBody)}\n`);
    return 0;
  }
  const now = option(rest, "now", Math.floor(Date.now() / 1000));
  const reason = verify(secret, third, rawBody, now, option(rest, "tolerance", 300));
  if (reason !== null) {
    process.stderr.write(`invalid: ${reason}\n`);
    return 1;
  }
  return 0;
}

process.exitCode = main(process.argv.slice(2));
