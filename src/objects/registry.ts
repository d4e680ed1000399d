/**
 * Class names. A stored object records the name its class was registered
 * under, never the JavaScript class name, so renaming a class (or a minifier)
 * does not orphan data: `@persistent('Account')`.
 */
import { invalidArgument } from '../core/errors.js';
import type { Persistent, PersistentClass } from './persistent.js';

const byName = new Map<string, PersistentClass>();
const byClass = new Map<PersistentClass, string>();

export function registerClass(name: string, cls: PersistentClass): void {
  if (typeof name !== 'string' || name.length === 0) throw invalidArgument('@persistent: the class name must be a non-empty string');
  const had = byName.get(name);
  if (had !== undefined && had !== cls) throw invalidArgument(`@persistent('${name}'): the name is already registered for another class`);
  const hadName = byClass.get(cls);
  if (hadName !== undefined && hadName !== name) throw invalidArgument(`@persistent('${name}'): the class is already registered as '${hadName}'`);
  byName.set(name, cls);
  byClass.set(cls, name);
}

/** Class decorator (TC39 standard decorators, TypeScript 5 without experimentalDecorators). */
export function persistent(name: string) {
  return function <C extends abstract new (...args: never[]) => Persistent>(cls: C, context: ClassDecoratorContext<C>): void {
    if (context.kind !== 'class') throw invalidArgument('@persistent decorates classes');
    registerClass(name, cls as unknown as PersistentClass);
  };
}

export function classByName(name: string): PersistentClass | undefined {
  return byName.get(name);
}

export function nameOfClass(cls: unknown): string | undefined {
  return byClass.get(cls as PersistentClass);
}
