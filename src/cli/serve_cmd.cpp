// `varps serve`: an HTTP image server (cpp-httplib) whose concurrent
// requests run as the streams of one batched generation (serve/batch_queue).
#include <CLI/CLI.hpp>
#include <httplib.h>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.hpp"
#include "cli/connection_limit.hpp"
#include "cli/serve_page.hpp"
#include "serve/access_tokens.hpp"
#include "serve/batch_queue.hpp"
#include "serve/client_socket.hpp"
#include "serve/metrics.hpp"
#include "serve/request_body.hpp"
#include "varps/adapter.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"

namespace varps::cli {

namespace {

constexpr size_t kMaxBody = 64 * 1024;
// A thread per connection: more than this many is a mistake, not a setting.
constexpr int kMaxConnections = 4096;
// How often a handler waiting for its image looks whether its client is
// still there: a withdrawn request leaves at the scale boundary after.
constexpr std::chrono::milliseconds kClientCheck{20};

void json_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(nlohmann::json{{"error", message}}.dump(), "application/json");
}

// Every method but `allowed` on `path` answers 405.
void refuse_other_methods(httplib::Server& svr, const std::string& path, const std::string& allowed) {
  const auto refuse = [allowed](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Allow", allowed);
    json_error(res, 405, "method " + req.method + " is not allowed here (allowed: " + allowed + ")");
  };
  if (allowed != "GET") svr.Get(path, refuse);
  if (allowed != "POST") svr.Post(path, refuse);
  svr.Put(path, refuse);
  svr.Delete(path, refuse);
  svr.Patch(path, refuse);
}

// The server: HTTPS with the PEM certificate (chain) and private key given,
// else HTTP. A file that cannot be read, or a pair OpenSSL refuses (not
// PEM, a key that does not match the certificate), is an Error naming it.
std::unique_ptr<httplib::Server> make_server(const std::string& cert, const std::string& key) {
  if (cert.empty() != key.empty())
    throw UsageError(cert.empty() ? "--tls-key needs --tls-cert" : "--tls-cert needs --tls-key");
  if (cert.empty()) return std::make_unique<httplib::Server>();
  for (const auto& [flag, file] : {std::pair{"--tls-cert", &cert}, std::pair{"--tls-key", &key}})
    if (!std::ifstream(*file)) throw Error(std::string(flag) + " " + *file + ": cannot read it");
  auto server = std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str());
  if (!server->is_valid())
    throw Error("--tls-cert " + cert + " and --tls-key " + key +
                ": OpenSSL refused them (each must be PEM, and the key the certificate's)");
  return server;
}

// The socket of the connection a request came on (TLS or not), or -1 when
// it cannot be found: then a client that goes away is not noticed.
int request_socket(const httplib::Request& req) {
  return serve::find_connection_socket({req.local_addr, req.local_port, req.remote_addr, req.remote_port});
}

// Why a handler stopped waiting for its result.
enum class Waited { Ready, PastDeadline, ClientGone };

// Until the result is ready, the deadline (time_point::max() for none)
// passes or the request's client goes away.
Waited wait_for_result(const std::future<serve::ImageResult>& result, std::chrono::steady_clock::time_point deadline,
                       const httplib::Request& req) {
  std::optional<int> socket;  // looked for once the result is not there at once
  for (;;) {
    const auto wake = std::min(deadline, std::chrono::steady_clock::now() + kClientCheck);
    if (result.wait_until(wake) == std::future_status::ready) return Waited::Ready;
    if (std::chrono::steady_clock::now() >= deadline) return Waited::PastDeadline;
    if (!socket) socket = request_socket(req);
    if (*socket >= 0 && serve::peer_has_gone(*socket)) return Waited::ClientGone;
  }
}

// The deadline of a request from its own timeout_ms and --max-request-ms,
// 0 for none: the nearer of those given.
int64_t request_deadline_ms(int64_t asked, int64_t server_max) {
  if (asked > 0 && server_max > 0) return std::min(asked, server_max);
  return asked > 0 ? asked : server_max;
}

}  // namespace

void add_serve(CLI::App& app, ServeArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "serve", "HTTP image server: concurrent requests run as the streams of one batched backbone pass per scale");
  add_model_flags(cmd, a.model);
  add_adapter_flag(cmd, a.adapter, "every image runs as its P streams");
  cmd->add_option("--host", a.host, "Address to listen on")->type_name("ADDR")->capture_default_str();
  cmd->add_option("--port", a.port, "Port to listen on; 0 picks a free one (printed on stderr)")
      ->type_name("PORT")
      ->capture_default_str();
  cmd->add_option("--max-batch", a.max_batch, "Images per batched pass; 1 runs the requests one by one")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--max-wait-ms", a.max_wait_ms, "How long the first waiting request waits for others to join")
      ->type_name("MS")
      ->capture_default_str();
  cmd->add_option("--join", a.join,
                  "When a request that arrives mid-generation joins: next-scale (at the running batch's next scale "
                  "boundary, its first scale in the same backbone pass as the others' later ones) or next-batch "
                  "(when the running batch has finished)")
      ->type_name("WHEN")
      ->capture_default_str();
  cmd->add_option("--max-queue", a.max_queue, "Requests that may wait; more are answered 503 with Retry-After")
      ->type_name("Q")
      ->capture_default_str();
  cmd->add_option("--token-file", a.token_file,
                  "Bearer tokens, one a line ('#' starts a comment): every endpoint but GET /healthz and GET / then "
                  "asks for 'Authorization: Bearer TOKEN', answering 401 without it and 403 for another token")
      ->type_name("FILE");
  cmd->add_flag("--insecure-public", a.insecure_public,
                "Listen on an address other than loopback without --token-file: anyone who reaches the port may "
                "generate and read the metrics");
  cmd->add_option("--tls-cert", a.tls_cert,
                  "Serve HTTPS with this PEM certificate (or chain, the server's first); needs --tls-key")
      ->type_name("FILE");
  cmd->add_option("--tls-key", a.tls_key, "The certificate's PEM private key (unencrypted)")->type_name("FILE");
  cmd->add_option("--max-connections", a.max_connections,
                  "Connections served at a time (1..4096), each by a thread of its own; one more is answered 503 "
                  "with Retry-After and closed")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--max-request-ms", a.max_request_ms,
                  "A generation not answered this long after it arrived is given up: 503 if it never started, 504 "
                  "if it was running (its rows leave at the next scale boundary when no request of its cohort "
                  "remains); a request's own \"timeout_ms\" may ask for less. 0: no limit")
      ->type_name("MS")
      ->capture_default_str();
  cmd->add_option("--io-timeout-s", a.io_timeout_s,
                  "A connection silent this long while the server reads a request from it or writes an answer to "
                  "it, or idle this long between keep-alive requests, is closed, freeing its worker")
      ->type_name("S")
      ->capture_default_str();
  add_device_flags(cmd, a.device);
  add_fast_mode_flags(cmd, a.fast);
  cmd->add_flag("--quiet,-q", a.quiet, "Print nothing but the listening address and errors");
  cmd->footer(
      "Endpoints:\n"
      "  POST /v1/generate  JSON {\"class\": 207 | \"uncond\" (required), \"seed\", \"cfg\", \"top_k\", \"top_p\", "
      "\"temperature\", \"format\": \"png\" | \"tokens\", \"timeout_ms\"}; unset fields take generate's defaults. "
      "Answers image/png (with generate's tEXt metadata) or the --tokens-out JSON; 400 {\"error\"} naming a bad "
      "field, 413 for a body over 64 KiB, 503 when the queue or the connections are full or the deadline passed "
      "before the generation started, 504 when it passed during it. A request whose client closes its connection "
      "is withdrawn (logged as 499).\n"
      "  GET /healthz  200 ok (never asks for a token)\n"
      "  GET /metrics  Prometheus text: varps_requests_total{code}, varps_requests_withdrawn_total{reason,stage}, "
      "varps_connections_over_limit_total, varps_images_total, varps_images_stopped_total, "
      "varps_images_discarded_total, varps_cohorts_stopped_total, varps_backbone_passes_total, "
      "varps_batches_total, varps_queue_depth, varps_request_seconds\n"
      "  GET /  a web page to generate images and watch them arrive\n\n"
      "Batching: up to --max-batch images are in flight; when none is, the first request waits at most "
      "--max-wait-ms for company. With --join next-scale the requests waiting at each scale boundary join the "
      "running ones as a cohort with its own KV cache, every step one backbone pass over all cohorts' rows; with "
      "next-batch they wait for the running batch to finish. An image is bit-identical to `varps generate`'s "
      "for the same class, seed and parameters, whatever else was in its batch.\n\n"
      "Access: without --token-file the server listens on loopback addresses only (127.0.0.1, ::1, localhost) "
      "unless --insecure-public is given. With it, a request needs 'Authorization: Bearer TOKEN' with a token of "
      "the file (compared in constant time); the page at / has a field for it. With --tls-cert and --tls-key it "
      "speaks HTTPS only, so tokens cannot be read on the way. docs/serving.md says how to put the server on a "
      "network.\n\n"
      "SIGINT or SIGTERM: stop accepting, finish the queued and running requests, exit 0.\n\n"
      "Example:\n"
      "  varps serve --var var_d16.pth --vae vae_ch160v4096z32.pth --port 8080 &\n"
      "  curl -s localhost:8080/v1/generate -d '{\"class\": 207, \"seed\": 1}' -o 207.png\n\n" +
      std::string(kExitStatusHelp));
}

int run_serve(const ServeArgs& a) {
  const PipelineOptions device = parse_device(a.device);
  const ModelChoice model = choose_model(a.model);
  const int port = parse_int("--port", a.port, 0);
  if (port > 65535) throw UsageError("--port " + a.port + ": must be in 0..65535");
  serve::BatchQueueOptions qo;
  qo.max_batch = parse_int("--max-batch", a.max_batch, 1);
  qo.max_wait = std::chrono::milliseconds(parse_int("--max-wait-ms", a.max_wait_ms, 0));
  qo.max_queue = parse_int("--max-queue", a.max_queue, 1);
  if (a.join == "next-scale") qo.joining = serve::Joining::NextScale;
  else if (a.join == "next-batch") qo.joining = serve::Joining::NextBatch;
  else throw UsageError("--join " + a.join + ": must be next-scale or next-batch");
  qo.fast = parse_fast_modes(a.fast);
  const int io_timeout_s = parse_int("--io-timeout-s", a.io_timeout_s, 1);
  const int max_connections = parse_int("--max-connections", a.max_connections, 1);
  if (max_connections > kMaxConnections)
    throw UsageError("--max-connections " + a.max_connections + ": at most " + std::to_string(kMaxConnections) +
                     " (each connection is served by a thread of its own)");
  const int64_t max_request_ms = parse_int("--max-request-ms", a.max_request_ms, 0);
  if (a.token_file.empty() && !a.insecure_public && !serve::is_loopback_host(a.host))
    throw UsageError("--host " + a.host +
                     " is not a loopback address: give --token-file FILE so that only its tokens' holders may use "
                     "the server, or --insecure-public to serve anyone who can reach it");
  const std::optional<serve::AccessTokens> tokens =
      a.token_file.empty() ? std::nullopt : std::optional<serve::AccessTokens>(serve::AccessTokens::load(a.token_file));
  // Before the model loads: a bad certificate fails at once.
  const std::unique_ptr<httplib::Server> server = make_server(a.tls_cert, a.tls_key);
  httplib::Server& svr = *server;
  const char* scheme = a.tls_cert.empty() ? "http" : "https";
  Console con(false, a.quiet);

  // OpenSSL writes to a socket with write(): a TLS client that hangs up
  // would otherwise end the server with SIGPIPE (plain HTTP sends with
  // MSG_NOSIGNAL). The write fails with EPIPE instead.
  std::signal(SIGPIPE, SIG_IGN);
  // SIGINT and SIGTERM go to one thread that stops the server; blocked in
  // every other thread (they inherit this mask).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::optional<ParScaleAdapter> adapter = read_adapter(a.adapter, peek_var_config(model));
  Pipeline pipe = load_model(model, device, con);
  attach_adapter(pipe, adapter, a.adapter, con);
  attach_refiner(pipe, a.fast, model, con);
  const VarConfig vc = pipe.var_config();
  check_fast_modes(qo.fast, vc, pipe.has_refiner());
  std::vector<std::pair<std::string, std::string>> png_model = model_metadata(model, pipe);
  add_adapter_metadata(png_model, a.adapter, pipe);
  add_fast_mode_metadata(png_model, qo.fast, a.fast);

  serve::BatchQueue queue(pipe, qo);
  serve::ServerMetrics metrics;
  svr.set_payload_max_length(kMaxBody);
  svr.set_read_timeout(io_timeout_s);
  svr.set_write_timeout(io_timeout_s);
  svr.set_keep_alive_timeout(io_timeout_s);
  // A connection's handler waits for its pass, so each has a thread.
  svr.new_task_queue = [max_connections] { return new ConnectionLimit(static_cast<size_t>(max_connections)); };
  svr.set_logger([&metrics](const httplib::Request&, const httplib::Response& res) { metrics.record_code(res.status); });
  // Before routing: connections over the limit are refused, and tokens are
  // checked, so an unknown path or method asks for them too; only the
  // health check and the page's static HTML do not.
  svr.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (ConnectionLimit::over_limit()) {
      metrics.record_over_limit();
      res.set_header("Retry-After", "1");
      res.set_header("Connection", "close");
      json_error(res, 503, "the server is serving its " + std::to_string(max_connections) +
                               " connections (--max-connections); retry later");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!tokens || (req.method == "GET" && (req.path == "/healthz" || req.path == "/")))
      return httplib::Server::HandlerResponse::Unhandled;
    switch (tokens->check(req.get_header_value("Authorization"))) {
      case serve::Access::Granted: return httplib::Server::HandlerResponse::Unhandled;
      case serve::Access::Missing:
        res.set_header("WWW-Authenticate", "Bearer");
        json_error(res, 401, "this server asks for 'Authorization: Bearer TOKEN'");
        break;
      case serve::Access::Refused: json_error(res, 403, "the token given is not one of this server's"); break;
    }
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) json_error(res, 404, "no such path: " + req.path + " (see GET / and POST /v1/generate)");
    else if (res.status == 413) json_error(res, 413, "request body over " + std::to_string(kMaxBody) + " bytes");
    else json_error(res, res.status, "HTTP " + std::to_string(res.status));
  });

  svr.Post("/v1/generate", [&](const httplib::Request& req, httplib::Response& res) {
    const auto t0 = std::chrono::steady_clock::now();
    auto parsed = serve::parse_generate_body(req.body, vc);
    if (auto* why = std::get_if<std::string>(&parsed)) return json_error(res, 400, *why);
    const serve::GenerateBody body = std::get<serve::GenerateBody>(parsed);
    std::optional<serve::Ticket> ticket = queue.submit(body.request);
    if (!ticket) {
      res.set_header("Retry-After", "1");
      return json_error(res, 503, "the queue is full (" + std::to_string(qo.max_queue) + " requests); retry later");
    }
    const int64_t deadline_ms = request_deadline_ms(body.timeout_ms, max_request_ms);
    const auto deadline =
        deadline_ms > 0 ? t0 + std::chrono::milliseconds(deadline_ms) : std::chrono::steady_clock::time_point::max();
    const Waited waited = wait_for_result(ticket->result, deadline, req);
    if (waited != Waited::Ready) {
      const serve::Withdrawal where = queue.withdraw(ticket->id);
      if (where != serve::Withdrawal::Finished) {
        metrics.record_withdrawn(waited == Waited::ClientGone ? "disconnect" : "deadline", where);
        if (waited == Waited::ClientGone) return json_error(res, 499, "the client closed the connection");
        const std::string limit = std::to_string(deadline_ms) + " ms";
        if (where == serve::Withdrawal::Running)
          return json_error(res, 504, "the deadline (" + limit + ") passed while the image was being generated");
        res.set_header("Retry-After", "1");
        return json_error(res, 503, "the deadline (" + limit + ") passed before the generation started; retry later");
      }
    }
    serve::ImageResult r;
    try {
      r = ticket->result.get();
    } catch (const std::future_error& e) {
      r.error = std::string("the request was lost: ") + e.what();
    }
    if (!r.error.empty()) return json_error(res, 500, r.error);
    res.set_header("X-Varps-Batch", std::to_string(r.batch_images));
    const ImageRequest& q = body.request;
    if (body.tokens) {
      nlohmann::ordered_json doc;
      doc["patch_nums"] = vc.patch_nums;
      doc["images"] = nlohmann::ordered_json::array(
          {nlohmann::ordered_json{{"class", q.class_id}, {"seed", q.seed}, {"tokens", r.tokens}}});
      res.set_content(doc.dump(), "application/json");
    } else {
      const std::vector<std::pair<std::string, std::string>> text = image_png_text(q, vc.num_classes, png_model);
      const RgbImage rgb = to_rgb8(r.pixels.data(), static_cast<int>(r.height), static_cast<int>(r.width));
      res.set_content(encode_png(rgb, text), "image/png");
    }
    metrics.record_latency(ms_since(t0) / 1000.0);
  });
  svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(queue.stats()), "text/plain; version=0.0.4");
  });
  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(serve_page_html(), "text/html; charset=utf-8");
  });
  refuse_other_methods(svr, "/v1/generate", "POST");
  for (const char* path : {"/healthz", "/metrics", "/"}) refuse_other_methods(svr, path, "GET");

  // The library listens with a backlog of 5: a burst of clients beyond it
  // waits a second for its SYN to be sent again. Listening again on the
  // bound socket raises the backlog.
  socket_t listen_socket = INVALID_SOCKET;
  svr.set_socket_options([&listen_socket](socket_t s) {
    httplib::default_socket_options(s);
    listen_socket = s;
  });
  const int bound = port == 0 ? svr.bind_to_any_port(a.host) : (svr.bind_to_port(a.host, port) ? port : -1);
  if (bound < 0) throw Error("cannot listen on " + a.host + ":" + std::to_string(port) + " (in use, or not an address here)");
  if (listen_socket != INVALID_SOCKET) ::listen(listen_socket, SOMAXCONN);
  std::fprintf(stderr, "varps: listening on %s://%s:%d\n", scheme, a.host.c_str(), bound);
  std::fflush(stderr);

  std::atomic<bool> signalled{false};
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (!signalled.exchange(true)) {
      con.status(std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                 ": finishing the queued requests");
      svr.stop();
    }
  });
  const bool ok = svr.listen_after_bind();
  queue.drain();
  const bool by_signal = signalled.exchange(true);
  if (!by_signal) pthread_kill(stopper.native_handle(), SIGTERM);  // wakes the signal thread, which then does nothing
  stopper.join();
  if (!by_signal && !ok) throw Error("the server stopped: accepting connections on " + a.host + ":" +
                                     std::to_string(bound) + " failed");
  return 0;
}

}  // namespace varps::cli
