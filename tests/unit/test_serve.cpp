// The server: the batch queue (requests joining one pass, results equal to
// each request alone), the request body's checks, and `varps serve` run as
// a process on loopback under a bounded load with bad requests mixed in.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "serve/batch_queue.hpp"
#include "serve/request_body.hpp"
#include "unit/cli_run.hpp"
#include "unit/test_files.hpp"
#include "varps/config.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

extern char** environ;

namespace varps {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

// GCC says so with __SANITIZE_ADDRESS__, clang with __has_feature.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
constexpr bool kAddressSanitizer = __has_feature(address_sanitizer);
#else
constexpr bool kAddressSanitizer = false;
#endif

ImageRequest request(int c, uint64_t seed) { return {c, seed, SamplingParams{2.0, 20, 0.9}}; }

serve::BatchQueueOptions queue_options(int max_batch, int max_wait_ms, int max_queue,
                                       serve::Joining joining = serve::Joining::NextScale) {
  serve::BatchQueueOptions o;
  o.max_batch = max_batch;
  o.max_wait = std::chrono::milliseconds(max_wait_ms);
  o.max_queue = max_queue;
  o.joining = joining;
  return o;
}

TEST(BatchQueue, WaitingRequestsJoinOnePassAndGetTheirOwnImages) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  serve::BatchQueue q(pipe, queue_options(8, 500, 64));
  std::vector<std::future<serve::ImageResult>> results;
  for (int i = 0; i < 6; ++i) results.push_back(std::move(q.submit(request(i, 100 + i))->result));
  for (int i = 0; i < 6; ++i) {
    const serve::ImageResult r = results[i].get();
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.batch_images, 6);
    const GeneratedImages alone = pipe.generate({request(i, 100 + i)});
    EXPECT_EQ(r.pixels, alone.pixels) << "request " << i;
    EXPECT_EQ(r.tokens, alone.tokens[0]);
  }
  EXPECT_EQ(q.stats().passes, 1);
  EXPECT_EQ(q.stats().backbone_passes, 4);  // one per scale
  EXPECT_EQ(q.stats().images, 6);
}

// Requests arriving one by one while others run: with Joining::NextScale
// they join at the next scale boundary, so cohorts overlap and share
// passes (fewer backbone passes than K per cohort); with NextBatch every
// cohort runs its K passes alone. Either way each image is its own.
void staggered_arrivals(serve::Joining joining) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  const int64_t K = pipe.var_config().num_scales();
  serve::BatchQueue q(pipe, queue_options(64, 0, 64, joining));
  std::vector<std::future<serve::ImageResult>> results;
  const int n = 24;
  for (int i = 0; i < n; ++i) {
    results.push_back(std::move(q.submit(request(i % 10, 500 + i))->result));
    std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
  for (int i = 0; i < n; ++i) {
    const serve::ImageResult r = results[i].get();
    ASSERT_TRUE(r.error.empty()) << r.error;
    const GeneratedImages alone = pipe.generate({request(i % 10, 500 + i)});
    EXPECT_EQ(r.pixels, alone.pixels) << "request " << i;
    EXPECT_EQ(r.tokens, alone.tokens[0]);
  }
  const serve::BatchQueueStats st = q.stats();
  EXPECT_EQ(st.images, n);
  EXPECT_LT(st.passes, n) << "some requests shared a cohort";
  if (joining == serve::Joining::NextScale)
    EXPECT_LT(st.backbone_passes, st.passes * K) << "cohorts overlapped: " << st.passes << " cohorts";
  else
    EXPECT_EQ(st.backbone_passes, st.passes * K);
}

TEST(BatchQueue, ArrivalsMidGenerationJoinAtTheNextScale) { staggered_arrivals(serve::Joining::NextScale); }
TEST(BatchQueue, ArrivalsMidGenerationWaitForTheNextBatch) { staggered_arrivals(serve::Joining::NextBatch); }

TEST(BatchQueue, MaxBatchOneRunsThemOneByOneAndAFullQueueRefuses) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  serve::BatchQueue q(pipe, queue_options(1, 0, 3));
  std::vector<std::future<serve::ImageResult>> results;
  int refused = 0;
  for (int i = 0; i < 20; ++i) {
    auto t = q.submit(request(1, i));
    if (t) results.push_back(std::move(t->result));
    else ++refused;
  }
  for (auto& f : results) EXPECT_EQ(f.get().batch_images, 1);
  EXPECT_EQ(q.stats().passes, static_cast<int64_t>(results.size()));
  EXPECT_GT(refused, 0) << "a queue of 3 took 20 requests submitted at once";
}

// Until the worker has taken every queued request.
void wait_until_taken(const serve::BatchQueue& q) {
  for (int i = 0; i < 20000 && q.stats().queue_depth > 0; ++i) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

// A request withdrawn while it waits leaves the queue and never runs; the
// others run as if it had never come.
TEST(BatchQueue, AWithdrawnWaitingRequestNeverRuns) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  serve::BatchQueue q(pipe, queue_options(4, 60000, 8));  // the first waits until 4 are queued
  serve::Ticket gone = *q.submit(request(1, 1));
  EXPECT_EQ(q.withdraw(gone.id), serve::Withdrawal::Queued);
  EXPECT_EQ(q.stats().queue_depth, 0);
  std::vector<serve::Ticket> stay;
  for (int i = 0; i < 4; ++i) stay.push_back(*q.submit(request(i, 200 + i)));
  for (int i = 0; i < 4; ++i) {
    const serve::ImageResult r = stay[i].result.get();
    EXPECT_EQ(r.batch_images, 4);
    EXPECT_EQ(r.pixels, pipe.generate({request(i, 200 + i)}).pixels) << "request " << i;
  }
  EXPECT_THROW(gone.result.get(), std::future_error);  // never set
  EXPECT_EQ(q.withdraw(stay[0].id), serve::Withdrawal::Finished);
  const serve::BatchQueueStats st = q.stats();
  EXPECT_EQ(st.images, 4);
  EXPECT_EQ(st.images_stopped + st.images_discarded, 0);
}

// The worker waiting with a lone request for company goes on waiting for
// the next one when that request is withdrawn.
TEST(BatchQueue, AWorkerLeftAloneByAWithdrawalServesTheNextRequest) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  serve::BatchQueue q(pipe, queue_options(2, 50, 8));
  serve::Ticket gone = *q.submit(request(1, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the worker waits with it
  EXPECT_EQ(q.withdraw(gone.id), serve::Withdrawal::Queued);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // past the wait for company
  serve::Ticket next = *q.submit(request(2, 2));
  ASSERT_EQ(next.result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(next.result.get().pixels, pipe.generate({request(2, 2)}).pixels);
}

// A running cohort all of whose requests were withdrawn stops at the next
// scale boundary (fewer than K passes, no images); one with a request left
// runs to its end, that request getting its own image and the withdrawn
// ones' images counted as thrown away.
TEST(BatchQueue, AWithdrawnCohortStopsAtTheNextScaleAndAPartlyWithdrawnOneRunsOn) {
  const Pipeline pipe = Pipeline::from_preset("tiny");
  const int64_t K = pipe.var_config().num_scales();
  constexpr int kImages = 48;  // a cohort long enough to withdraw from while it runs
  bool stopped = false, discarded = false;
  for (int attempt = 0; attempt < 5 && !(stopped && discarded); ++attempt) {
    serve::BatchQueue q(pipe, queue_options(kImages, 60000, kImages));
    std::vector<serve::Ticket> t;
    for (int i = 0; i < kImages; ++i) t.push_back(*q.submit(request(i % 10, 300 + i)));
    wait_until_taken(q);
    const bool keep_one = attempt % 2 == 1;
    int running = 0;
    for (int i = keep_one ? 1 : 0; i < kImages; ++i) running += q.withdraw(t[i].id) == serve::Withdrawal::Running;
    if (running != kImages - (keep_one ? 1 : 0)) continue;  // the cohort finished first: try again
    if (keep_one) {
      const serve::ImageResult r = t[0].result.get();
      EXPECT_EQ(r.pixels, pipe.generate({request(0, 300)}).pixels);
    }
    q.drain();
    const serve::BatchQueueStats st = q.stats();
    if (keep_one) {
      EXPECT_EQ(st.images, kImages);
      EXPECT_EQ(st.images_discarded, kImages - 1);
      EXPECT_EQ(st.cohorts_stopped, 0);
      discarded = true;
    } else {
      EXPECT_EQ(st.images, 0);
      EXPECT_EQ(st.images_stopped, kImages);
      EXPECT_EQ(st.cohorts_stopped, 1);
      EXPECT_LT(st.backbone_passes, K);
      stopped = true;
    }
  }
  EXPECT_TRUE(stopped && discarded) << "no attempt withdrew the cohort while it ran";
}

TEST(RequestBody, DefaultsFieldsAndRefusalsNamingTheField) {
  const VarConfig vc = preset_var_config("tiny");
  const auto ok = serve::parse_generate_body(R"({"class": "uncond", "seed": 7, "top_p": 0.5, "format": "tokens"})", vc);
  ASSERT_TRUE(std::holds_alternative<serve::GenerateBody>(ok));
  const serve::GenerateBody b = std::get<serve::GenerateBody>(ok);
  EXPECT_EQ(b.request.class_id, 10);
  EXPECT_EQ(b.request.seed, 7u);
  EXPECT_EQ(b.request.sampling.top_p, 0.5);
  EXPECT_EQ(b.request.sampling.cfg, 4.0);  // generate's default
  EXPECT_TRUE(b.tokens);
  EXPECT_EQ(b.timeout_ms, 0);
  EXPECT_EQ(std::get<serve::GenerateBody>(serve::parse_generate_body(R"({"class": 1, "timeout_ms": 250})", vc)).timeout_ms,
            250);
  for (const auto& [body, needle] : std::vector<std::pair<std::string, std::string>>{
           {"{", "malformed JSON"},
           {"[1]", "JSON object"},
           {"{}", "field 'class': required"},
           {R"({"class": 11})", "field 'class': 11 is out of range"},
           {R"({"class": 1.5})", "field 'class'"},
           {R"({"class": 1, "seed": -1})", "field 'seed'"},
           {R"({"class": 1, "cfg": -2})", "field 'cfg'"},
           {R"({"class": 1, "top_p": 1.5})", "field 'top_p'"},
           {R"({"class": 1, "top_k": "9"})", "field 'top_k'"},
           {R"({"class": 1, "temperature": 0})", "field 'temperature'"},
           {R"({"class": 1, "format": "gif"})", "field 'format'"},
           {R"({"class": 1, "timeout_ms": 0})", "field 'timeout_ms'"},
           {R"({"class": 1, "timeout_ms": 1.5})", "field 'timeout_ms'"},
           {R"({"class": 1, "timeout_ms": 100000000})", "field 'timeout_ms'"},
           {R"({"class": 1, "clas": 2})", "field 'clas': unknown"}}) {
    const auto r = serve::parse_generate_body(body, vc);
    ASSERT_TRUE(std::holds_alternative<std::string>(r)) << body;
    EXPECT_NE(std::get<std::string>(r).find(needle), std::string::npos) << body << " -> " << std::get<std::string>(r);
  }
}

// `varps serve` as a child process; its stderr goes to a file.
class ServerProcess {
 public:
  ServerProcess(const TempDir& dir, const std::vector<std::string>& args) : err_(dir / "serve_stderr.txt") {
    std::vector<std::string> argv = {VARPS_CLI_PATH, "serve", "--preset", "tiny", "--port", "0", "--threads", "2"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    EXPECT_EQ(posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 200 && port_ == 0; ++i) {  // up to 20 s for the address line
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const std::string err = test::read_bytes(err_);
      // http:// or https://
      const size_t at = err.find("://127.0.0.1:", err.find("listening on "));
      if (err.find("listening on ") != std::string::npos && at != std::string::npos) port_ = std::stoi(err.substr(at + 13));
    }
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // SIGTERM, then the exit status.
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  long rss_kib() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
  }
  std::string stderr_text() const { return test::read_bytes(err_); }

 private:
  fs::path err_;
  pid_t pid_ = -1;
  int port_ = 0;
};

int64_t metric(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stoll(text.substr(at + name.size() + 2));
}

RgbImage png_pixels(const TempDir& dir, const std::string& bytes, const std::string& name) {
  test::write_bytes(dir / name, bytes);
  return read_png(dir / name);
}

TEST(Serve, BoundedLoadWithBadRequestsMixedIn) {
  TempDir dir;
  ServerProcess server(dir, {"--max-batch", "8", "--max-wait-ms", "20", "--max-queue", "64", "-q"});
  ASSERT_GT(server.port(), 0) << server.stderr_text();
  httplib::Client warm("127.0.0.1", server.port());
  for (int i = 0; i < 8; ++i) ASSERT_EQ(warm.Post("/v1/generate", R"({"class": 1})", "application/json")->status, 200);
  const long rss_warm = server.rss_kib();

  const Pipeline pipe = Pipeline::from_preset("tiny");
  std::atomic<int> next{0}, ok{0}, refused{0}, wrong{0};
  std::vector<std::string> failures;
  std::mutex failures_mutex;
  const auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(failures_mutex);
    if (failures.size() < 10) failures.push_back(what);
  };
  std::vector<std::thread> clients;
  for (int t = 0; t < 16; ++t)
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", server.port());
      c.set_read_timeout(60, 0);
      TempDir mine;
      for (int i = next++; i < 200; i = next++) {
        if (i % 10 == 3) {  // malformed, oversized or out of range: 4xx
          const std::string body = i % 30 == 3 ? "{\"class\": " : i % 30 == 13 ? std::string(70000, ' ') + "{}"
                                                                               : R"({"class": 1, "top_p": 7})";
          auto r = c.Post("/v1/generate", body, "application/json");
          if (!r || r->status < 400 || r->status >= 500) fail("bad request " + std::to_string(i) + " not 4xx");
          else ++refused;
          continue;
        }
        const int cls = i % 10;
        auto r = c.Post("/v1/generate", "{\"class\": " + std::to_string(cls) + ", \"seed\": " + std::to_string(i) +
                                             ", \"cfg\": 2, \"top_k\": 20, \"top_p\": 0.9}",
                        "application/json");
        if (!r || r->status != 200) {
          fail("request " + std::to_string(i) + ": " + (r ? std::to_string(r->status) + " " + r->body : "no answer"));
          continue;
        }
        const GeneratedImages want = pipe.generate({request(cls, static_cast<uint64_t>(i))});
        if (png_pixels(mine, r->body, "r.png").pixels != to_rgb8(want.pixels.data(), 8, 8).pixels) {
          ++wrong;
          fail("request " + std::to_string(i) + ": wrong image");
        } else {
          ++ok;
        }
      }
    });
  // A client that leaves before its answer.
  clients.emplace_back([&] {
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(0, 1000);  // gives up after 1 ms
    c.Post("/v1/generate", R"({"class": 2, "seed": 5})", "application/json");
  });
  for (auto& t : clients) t.join();
  for (const std::string& f : failures) ADD_FAILURE() << f;
  EXPECT_EQ(ok, 180);
  EXPECT_EQ(refused, 20);
  EXPECT_EQ(wrong, 0);

  httplib::Client c("127.0.0.1", server.port());
  EXPECT_EQ(c.Get("/healthz")->body, "ok");
  const std::string m = c.Get("/metrics")->body;
  const int64_t images = metric(m, "varps_images_total");
  EXPECT_GE(images, 188);
  EXPECT_LT(metric(m, "varps_backbone_passes_total"), images * 4) << m;  // batching happened
  EXPECT_NE(m.find("varps_requests_total{code=\"200\"}"), std::string::npos);
  EXPECT_NE(m.find("varps_request_seconds_count"), std::string::npos);
  const long rss_after = server.rss_kib();
  EXPECT_EQ(server.stop(), 0) << server.stderr_text();
  if (kAddressSanitizer)
    GTEST_SKIP() << "resident memory left unchecked (everything else was checked): AddressSanitizer keeps freed "
                    "memory in quarantine, so it grows by design";
  EXPECT_LT(rss_after, rss_warm * 11 / 10 + 4096) << "resident " << rss_warm << " KiB after warm-up, " << rss_after
                                                   << " KiB after the load";
}

TEST(Serve, ImagesAreTheCommandLinesBitForBitAndErrorsAreJson) {
  TempDir dir;
  ServerProcess server(dir, {"-q"});
  ASSERT_GT(server.port(), 0) << server.stderr_text();
  test::expect_ok(test::run_cli_tiny(dir, {"generate", "--class", "4", "--seed", "9", "--cfg", "1.5", "--out", "g",
                                      "--tokens-out", "t.json", "--quiet"}));
  httplib::Client c("127.0.0.1", server.port());
  auto png = c.Post("/v1/generate", R"({"class": 4, "seed": 9, "cfg": 1.5})", "application/json");
  ASSERT_TRUE(png);
  EXPECT_EQ(png->status, 200);
  EXPECT_EQ(png->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(png->body, test::read_bytes(dir / "g/000000.png"));  // pixels and metadata
  auto tokens = c.Post("/v1/generate", R"({"class": 4, "seed": 9, "cfg": 1.5, "format": "tokens"})",
                       "application/json");
  EXPECT_EQ(nlohmann::json::parse(tokens->body)["images"][0]["tokens"],
            test::read_json(dir / "t.json")["images"][0]["tokens"]);
  EXPECT_EQ(c.Get("/nope")->status, 404);
  EXPECT_EQ(c.Get("/v1/generate")->status, 405);
  auto bad = c.Post("/v1/generate", R"({"class": 4, "top_p": 2})", "application/json");
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(nlohmann::json::parse(bad->body)["error"].get<std::string>().find("top_p"), std::string::npos);
  auto page = c.Get("/");
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("/v1/generate"), std::string::npos);
  EXPECT_EQ(page->body.find("http://"), std::string::npos) << "the page loads nothing from elsewhere";
  EXPECT_EQ(server.stop(), 0);
}

// With --token-file every endpoint but the health check and the page asks
// for a token: 401 without one, 403 for another, the image with one; the
// refusals are counted in /metrics (which asks for the token too).
TEST(Serve, TokenFileGuardsEveryEndpointButHealthAndPage) {
  TempDir dir;
  test::write_bytes(dir / "tokens", "# clients\nfirst-token\nsecond-token\n");
  ServerProcess server(dir, {"-q", "--token-file", (dir / "tokens").string()});
  ASSERT_GT(server.port(), 0) << server.stderr_text();
  test::expect_ok(test::run_cli_tiny(dir, {"generate", "--class", "2", "--seed", "5", "--out", "g", "--quiet"}));
  httplib::Client c("127.0.0.1", server.port());
  const std::string body = R"({"class": 2, "seed": 5})";
  auto none = c.Post("/v1/generate", body, "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_NE(nlohmann::json::parse(none->body)["error"].get<std::string>().find("Bearer"), std::string::npos);
  auto wrong = c.Post("/v1/generate", {{"Authorization", "Bearer third-token"}}, body, "application/json");
  EXPECT_EQ(wrong->status, 403);
  EXPECT_TRUE(nlohmann::json::parse(wrong->body).contains("error"));
  auto right = c.Post("/v1/generate", {{"Authorization", "Bearer second-token"}}, body, "application/json");
  EXPECT_EQ(right->status, 200);
  EXPECT_EQ(right->body, test::read_bytes(dir / "g/000000.png"));
  EXPECT_EQ(c.Get("/healthz")->status, 200);
  EXPECT_EQ(c.Get("/")->status, 200);
  EXPECT_EQ(c.Get("/nope")->status, 401) << "an unknown path asks for the token before saying it is unknown";
  EXPECT_EQ(c.Get("/metrics")->status, 401);
  // The server counts an answer after sending it, so the last refusal may
  // reach the counters a moment after its client has it: read them until
  // it has (at most 5 s), then check both counts.
  int status = 0;
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    auto r = c.Get("/metrics", {{"Authorization", "Bearer first-token"}});
    ASSERT_TRUE(r);
    status = r->status;
    metrics = r->body;
    if (metrics.find("varps_requests_total{code=\"401\"} 3") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(status, 200);
  EXPECT_NE(metrics.find("varps_requests_total{code=\"401\"} 3"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("varps_requests_total{code=\"403\"} 1"), std::string::npos) << metrics;
  EXPECT_EQ(server.stop(), 0);
}

fs::path tls_file(const char* name) { return fs::path(VARPS_TEST_DATA) / "tls" / name; }

TEST(Serve, SpeaksHttpsWithACertificateAndKey) {
  // OpenSSL's client writes with write(): a server hanging up must not end
  // this process.
  signal(SIGPIPE, SIG_IGN);
  TempDir dir;
  test::write_bytes(dir / "tokens", "secret-token\n");
  ServerProcess server(dir, {"-q", "--token-file", (dir / "tokens").string(), "--tls-cert",
                             tls_file("server.crt").string(), "--tls-key", tls_file("server.key").string()});
  ASSERT_GT(server.port(), 0) << server.stderr_text();
  EXPECT_NE(server.stderr_text().find("listening on https://127.0.0.1:"), std::string::npos) << server.stderr_text();
  test::expect_ok(test::run_cli_tiny(dir, {"generate", "--class", "4", "--seed", "9", "--out", "g", "--quiet"}));
  // The client checks the certificate (its own issuer) and the address.
  httplib::SSLClient c("127.0.0.1", server.port());
  c.set_ca_cert_path(tls_file("server.crt").c_str());
  c.enable_server_certificate_verification(true);
  auto r = c.Post("/v1/generate", {{"Authorization", "Bearer secret-token"}}, R"({"class": 4, "seed": 9})",
                  "application/json");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, test::read_bytes(dir / "g/000000.png"));
  auto refused = c.Post("/v1/generate", R"({"class": 4})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  // Plain HTTP to the same port gets no HTTP answer.
  httplib::Client plain("127.0.0.1", server.port());
  plain.set_read_timeout(5, 0);
  auto p = plain.Get("/healthz");
  EXPECT_TRUE(!p || p->status != 200);
  // Clients that give up after a millisecond and hang up, mid-handshake or
  // mid-request.
  for (int i = 0; i < 5; ++i) {
    httplib::SSLClient impatient("127.0.0.1", server.port());
    impatient.enable_server_certificate_verification(false);
    impatient.set_read_timeout(0, 1000);
    impatient.Post("/v1/generate", {{"Authorization", "Bearer secret-token"}}, R"({"class": 1})", "application/json");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // None of that ended the server.
  httplib::SSLClient again("127.0.0.1", server.port());
  again.set_ca_cert_path(tls_file("server.crt").c_str());
  again.enable_server_certificate_verification(true);
  auto health = again.Get("/healthz");
  ASSERT_TRUE(health) << httplib::to_string(health.error());
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(server.stop(), 0);
}

TEST(Serve, RefusesTlsMaterialItCannotUse) {
  TempDir dir;
  const std::string cert = tls_file("server.crt").string(), key = tls_file("server.key").string();
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--tls-cert", cert}), 2, {"--tls-cert needs --tls-key"});
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--tls-key", key}), 2, {"--tls-key needs --tls-cert"});
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--tls-cert", "absent.crt", "--tls-key", key}), 1,
                     {"--tls-cert absent.crt", "cannot read"});
  test::expect_error(
      test::run_cli_tiny(dir, {"serve", "--port", "0", "--tls-cert", cert, "--tls-key", tls_file("other.key").string()}),
      1, {"other.key", "OpenSSL refused", "the key the certificate's"});
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--tls-cert", key, "--tls-key", key}), 1,
                     {"OpenSSL refused"});
}

// A TCP connection to the loopback port, or -1.
int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Seconds until the server closes a connection that sent `bytes` and then
// fell silent (at most 15, then -1).
double seconds_until_dropped(int port, const std::string& bytes) {
  const int fd = connect_loopback(port);
  if (fd < 0) return -1;
  timeval wait{15, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  char buf[4096];
  ssize_t got = 0;
  while ((got = ::recv(fd, buf, sizeof buf, 0)) > 0) {
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  return got == 0 || errno == ECONNRESET ? s : -1;
}

TEST(Serve, DropsAConnectionSilentPastTheIoTimeout) {
  TempDir dir;
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--io-timeout-s", "0"}), 2, {"--io-timeout-s"});
  ServerProcess server(dir, {"-q", "--io-timeout-s", "1"});
  ASSERT_GT(server.port(), 0) << server.stderr_text();
  // Half the headers, then silence; all the headers and half the body.
  std::atomic<double> headers{-2}, body{-2};
  std::thread slow_headers([&] { headers = seconds_until_dropped(server.port(), "POST /v1/generate HTTP/1.1\r\nHost: x\r\n"); });
  std::thread slow_body([&] {
    body = seconds_until_dropped(server.port(),
                                 "POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"class\": 1");
  });
  // Meanwhile the server answers others.
  httplib::Client c("127.0.0.1", server.port());
  auto r = c.Post("/v1/generate", R"({"class": 1, "seed": 3})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  slow_headers.join();
  slow_body.join();
  EXPECT_GE(headers, 0.5);
  EXPECT_LE(headers, 3.0);
  EXPECT_GE(body, 0.5);
  EXPECT_LE(body, 3.0);
  EXPECT_EQ(server.stop(), 0);
}

// The metric's value from /metrics, polled until it is `want` (for at most
// 5 s); the last value seen.
int64_t metric_reaching(int port, const std::string& name, int64_t want) {
  httplib::Client c("127.0.0.1", port);
  int64_t v = -1;
  for (int i = 0; i < 250 && v != want; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto r = c.Get("/metrics");
    if (r) v = metric(r->body, name);
  }
  return v;
}

// A request past its deadline while it waits is answered 503 (the nearer
// of its timeout_ms and --max-request-ms); one whose client hangs up is
// withdrawn and logged 499; the requests after them run as if they had not
// come. (The first request waits 60 s for 4 to batch, so both wait queued.)
TEST(Serve, WithdrawsRequestsPastTheirDeadlineOrWhoseClientLeft) {
  TempDir dir;
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--max-request-ms", "-1"}), 2,
                     {"--max-request-ms"});
  ServerProcess server(dir, {"-q", "--max-batch", "4", "--max-wait-ms", "60000", "--max-request-ms", "1500"});
  ASSERT_GT(server.port(), 0) << server.stderr_text();
  httplib::Client c("127.0.0.1", server.port());
  for (const auto& [body, least, most] : {std::tuple{R"({"class": 1})", 1.5, 5.0},
                                          std::tuple{R"({"class": 1, "timeout_ms": 100})", 0.1, 1.2},
                                          std::tuple{R"({"class": 1, "timeout_ms": 5000})", 1.5, 4.5}}) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = c.Post("/v1/generate", body, "application/json");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(r) << body;
    EXPECT_EQ(r->status, 503) << body;
    EXPECT_EQ(r->get_header_value("Retry-After"), "1");
    EXPECT_NE(nlohmann::json::parse(r->body)["error"].get<std::string>().find("deadline"), std::string::npos)
        << r->body;
    EXPECT_GE(s, least) << body;
    EXPECT_LE(s, most) << body;
  }
  // A whole request, then the client goes away while it waits.
  const int fd = connect_loopback(server.port());
  ASSERT_GE(fd, 0);
  const std::string post = "POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"class\": 2}";
  ASSERT_EQ(::send(fd, post.data(), post.size(), MSG_NOSIGNAL), static_cast<ssize_t>(post.size()));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ::close(fd);
  EXPECT_EQ(metric_reaching(server.port(), "varps_requests_withdrawn_total{reason=\"disconnect\",stage=\"queued\"}", 1),
            1);
  // Four at once fill the batch: each gets its own image.
  const Pipeline pipe = Pipeline::from_preset("tiny");
  std::vector<std::thread> four;
  std::atomic<int> right{0};
  for (int i = 0; i < 4; ++i)
    four.emplace_back([&, i] {
      httplib::Client mine("127.0.0.1", server.port());
      auto r = mine.Post("/v1/generate", "{\"class\": " + std::to_string(i) + ", \"seed\": 8, \"format\": \"tokens\"}",
                         "application/json");
      if (r && r->status == 200 &&
          nlohmann::json::parse(r->body)["images"][0]["tokens"] == nlohmann::json(pipe.generate({{i, 8, {}}}).tokens[0]))
        ++right;
    });
  for (auto& t : four) t.join();
  EXPECT_EQ(right, 4);
  const std::string m = c.Get("/metrics")->body;
  EXPECT_EQ(metric(m, "varps_requests_withdrawn_total{reason=\"deadline\",stage=\"queued\"}"), 3) << m;
  EXPECT_EQ(metric(m, "varps_requests_total{code=\"499\"}"), 1) << m;
  EXPECT_EQ(metric(m, "varps_requests_total{code=\"503\"}"), 3) << m;
  EXPECT_EQ(metric(m, "varps_images_total"), 4) << m;
  EXPECT_EQ(server.stop(), 0) << server.stderr_text();
}

// Connections beyond --max-connections are answered 503 and closed; once
// the ones held go, the server answers again.
TEST(Serve, AnswersConnectionsOverTheLimit503) {
  TempDir dir;
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--max-connections", "0"}), 2,
                     {"--max-connections"});
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--max-connections", "100000"}), 2,
                     {"--max-connections 100000", "at most 4096"});
  ServerProcess server(dir, {"-q", "--max-connections", "2"});
  ASSERT_GT(server.port(), 0) << server.stderr_text();
  // Two connections that say nothing hold both workers.
  const int held[2] = {connect_loopback(server.port()), connect_loopback(server.port())};
  ASSERT_GE(held[0], 0);
  ASSERT_GE(held[1], 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  httplib::Client c("127.0.0.1", server.port());
  auto r = c.Post("/v1/generate", R"({"class": 1})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_NE(r->body.find("--max-connections"), std::string::npos) << r->body;
  for (int fd : held) ::close(fd);
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    httplib::Client again("127.0.0.1", server.port());
    auto h = again.Get("/healthz");
    status = h ? h->status : 0;
  }
  EXPECT_EQ(status, 200);
  httplib::Client last("127.0.0.1", server.port());
  const std::string m = last.Get("/metrics")->body;
  EXPECT_GE(metric(m, "varps_connections_over_limit_total"), 1) << m;
  EXPECT_EQ(server.stop(), 0) << server.stderr_text();
}

TEST(Serve, RefusesToFaceANetworkWithoutTokensUnlessTold) {
  TempDir dir;
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--host", "0.0.0.0", "--port", "0"}), 2,
                     {"--host 0.0.0.0", "--token-file", "--insecure-public"});
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--token-file", "absent.txt"}), 1,
                     {"--token-file", "absent.txt"});
  test::write_bytes(dir / "empty", "# no tokens yet\n");
  test::expect_error(test::run_cli_tiny(dir, {"serve", "--port", "0", "--token-file", "empty"}), 1,
                     {"holds no token"});
}

// The web page in a real headless browser (Debian's chromium): load it with
// the form filled from the query string, let it submit, wait for both
// images, read the page back and take a screenshot.
TEST(Serve, WebPageGeneratesInAHeadlessBrowser) {
  const char* chromium = nullptr;
  for (const char* c : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (fs::exists(c)) chromium = c;
  if (!chromium) GTEST_SKIP() << "no chromium (apt-get install chromium)";
  TempDir dir;
  ServerProcess server(dir, {"-q"});
  ASSERT_GT(server.port(), 0) << server.stderr_text();
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/?class=3&seed=1&streams=2&autorun=1";
  const std::string browser = std::string("cd ") + test::sh_quote(dir.path().string()) + " && timeout 120 " + chromium +
                              " --headless --no-sandbox --disable-gpu --virtual-time-budget=20000 "
                              "--window-size=900,700 ";
  ASSERT_EQ(std::system((browser + "--dump-dom " + test::sh_quote(url) + " > dom.html 2> browser.txt").c_str()), 0)
      << test::read_bytes(dir / "browser.txt");
  const std::string dom = test::read_bytes(dir / "dom.html");
  EXPECT_NE(dom.find("<p id=\"status\">done 2/2</p>"), std::string::npos) << dom.substr(0, 4000);
  EXPECT_NE(dom.find("<img alt=\"class 3 seed 1\" src=\"blob:"), std::string::npos);
  EXPECT_NE(dom.find("<img alt=\"class 3 seed 2\" src=\"blob:"), std::string::npos);
  EXPECT_NE(dom.find("class 3, seed 2, cfg 4, top-k 900, top-p 0.95: "), std::string::npos);
  ASSERT_EQ(std::system((browser + "--screenshot=shot.png " + test::sh_quote(url) + " 2> browser.txt").c_str()), 0);
  const RgbImage shot = read_png(dir / "shot.png");
  EXPECT_EQ(shot.width, 900);
  int64_t colored = 0;  // the images: pixels far from the page's white and grey
  for (size_t i = 0; i + 2 < shot.pixels.size(); i += 3) {
    const int r = shot.pixels[i], g = shot.pixels[i + 1], b = shot.pixels[i + 2];
    colored += std::max({r, g, b}) - std::min({r, g, b}) > 60;
  }
  EXPECT_GT(colored, 2 * 200 * 200) << "the screenshot shows no generated images";
  httplib::Client c("127.0.0.1", server.port());
  EXPECT_NE(c.Get("/metrics")->body.find("varps_images_total 4")  /* two page loads */, std::string::npos);
  EXPECT_EQ(server.stop(), 0);
}

}  // namespace
}  // namespace varps
