// Sample node app: a plain http server on $PORT.
const http = require("http");
const port = Number(process.env.PORT);
http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end(`hello from node ${process.version}`);
}).listen(port, "0.0.0.0");
