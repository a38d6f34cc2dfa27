// The services' events, typed by the contract, fanned out to every transport (IPC, WebSocket).
import type { EventName, EventOf } from '../contract/api.ts';

export type EventListener = <E extends EventName>(event: E, data: EventOf<E>) => void;

export class EventBus {
  private readonly listeners = new Set<EventListener>();

  emit<E extends EventName>(event: E, data: EventOf<E>): void {
    for (const l of this.listeners) {
      try {
        l(event, data);
      } catch (e) {
        console.error(`event listener for ${event} failed:`, e);
      }
    }
  }

  /** Returns the disposer. */
  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
