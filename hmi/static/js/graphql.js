// GraphQL over HTTP (POST /graphql): queries and mutations.

export class GraphQLError extends Error {
  constructor(errors) {
    super(errors.map((error) => error.message).join("; "));
    this.errors = errors;
    const extensions = errors[0]?.extensions ?? {};
    this.code = extensions.code ?? "error";
    this.reason = extensions.reason ?? null;
  }
}

/** The operation's data; a GraphQLError when the API refused it. */
export async function post(query, variables = {}, token = null) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch("/graphql", {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors?.length) throw new GraphQLError(body.errors);
  return body.data;
}
