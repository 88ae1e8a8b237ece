/** An AbortSignal aborted as soon as any of `signals` aborts (with that signal's reason). */
export function anySignal(...signals: AbortSignal[]): AbortSignal {
  return AbortSignal.any(signals);
}
