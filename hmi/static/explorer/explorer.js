// GraphiQL on the plant core's own files (served with the HMI; nothing from a CDN).
// Queries and mutations go over HTTP with the headers typed in the Headers tab
// ({"Authorization": "Bearer <accessToken>"}); subscriptions over the
// graphql-transport-ws socket, which is given the same Authorization header.
"use strict";

(function () {
  const url = new URL("/graphql", window.location.href);
  const socketUrl = new URL(url);
  socketUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";

  const EXAMPLE = [
    "# Log in, then put the token in the Headers tab below:",
    '# {"Authorization": "Bearer <accessToken>"}',
    "mutation {",
    '  login(username: "<user>", password: "<password>") { accessToken refreshToken expiresAt }',
    "}",
    "",
  ].join("\n");

  let headers = {};
  function onEditHeaders(text) {
    try {
      headers = text ? JSON.parse(text) : {};
    } catch (_) {
      headers = {};
    }
  }

  const fetcher = GraphiQL.createFetcher({
    url: url.toString(),
    subscriptionUrl: socketUrl.toString(),
    // Read when the socket opens, so a token pasted later is used.
    wsConnectionParams: {
      get authorization() {
        return headers.Authorization || headers.authorization || "";
      },
    },
  });

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: EXAMPLE,
      onEditHeaders: onEditHeaders,
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
    }),
  );
})();
