// The project's error shape: a message for people, a `code` for programs (and tests) to branch
// on. Each module declares its own subclass with the codes it can throw:
//   export class ConflistError extends CodedError<'CONF_NOT_JSON' | 'CONF_NOT_A_LIST'> {
//     override readonly name = 'ConflistError';
//   }
export class CodedError<C extends string> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
