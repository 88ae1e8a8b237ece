/**
 * Every choice the simulator makes comes from one `Source`: a seeded PRNG
 * whose draws are recorded on a tape. Replaying a tape replays the run
 * exactly; a tape that runs out yields 0, and 0 always means the simplest
 * choice (no fault, the shortest delay, the first ready event), so the
 * shrinker simplifies a schedule by zeroing or truncating its tape.
 */
export class Source {
  /** Draws made so far (uint32 each). */
  readonly tape: number[] = [];
  /** Tape positions whose draw decided to inject a fault (what the shrinker tries first). */
  readonly faultDraws: number[] = [];
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(
    readonly seed: number,
    private readonly replay?: readonly number[],
  ) {
    // sfc32 seeded through splitmix32
    let s = seed >>> 0;
    const mix = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.prng();
  }

  private prng(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) >>> 0;
    return t >>> 0;
  }

  /** Next raw draw (uint32). */
  next(): number {
    let v: number;
    if (this.replay) v = this.tape.length < this.replay.length ? this.replay[this.tape.length]! : 0;
    else v = this.prng();
    this.tape.push(v);
    return v;
  }

  /** A float in [0, 1); 0 on an exhausted replay tape. */
  float(): number {
    return this.next() / 4_294_967_296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    const v = this.next();
    return n <= 1 ? 0 : v % n;
  }

  /** An integer in [lo, hi]; lo is the simplest. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p; a zero draw is always false. Fault decisions use `fault`. */
  chance(p: number): boolean {
    return this.float() >= 1 - p;
  }

  /** `chance(p)` for a fault decision: remembered so the shrinker can try removing it. */
  fault(p: number): boolean {
    const at = this.tape.length;
    const yes = this.chance(p);
    if (yes) this.faultDraws.push(at);
    return yes;
  }
}
