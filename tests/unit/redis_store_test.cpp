// RedisLimitStore against a real redis-server (Debian's, started here on a
// free loopback port, as tests/e2e/harness.mjs does): one scope's tokens
// reserved and settled exactly through the admit and settle scripts, a
// requests-per-minute limit refusing the next request with the same error as
// the in-process store, and an unreachable Redis falling back to this
// process's share of every limit, or failing closed, as configured.
// Without redis-server these tests fail and say how to install it.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <variant>

#include "core/config_load.h"
#include "io/deadlines.h"
#include "limits/limit_store.h"
#include "store/redis_limit_store.h"

namespace tg::store {
namespace {

namespace net = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (std::size_t start = 0; start <= dirs.size();) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return {};
}

std::uint16_t free_port() {
  net::io_context ioc;
  net::ip::tcp::acceptor a(ioc, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// PING answered with +PONG on 127.0.0.1:port.
bool pong(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::write(fd, "PING\r\n", 6) == 6) {
    char buf[16] = {};
    ok = ::read(fd, buf, sizeof buf - 1) > 0 && std::string_view(buf).starts_with("+PONG");
  }
  ::close(fd);
  return ok;
}

// One redis-server for the test suite (each ctest process runs one test).
class RedisServer {
 public:
  static std::string start() {
    const std::string bin = find_on_path("redis-server");
    if (bin.empty())
      return "redis-server is not installed (not found on PATH): run scripts/setup --test, which installs "
             "Debian's redis-server";
    port_ = free_port();
    dir_ = std::filesystem::temp_directory_path() / ("tg-redis-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string port = std::to_string(port_), dir = dir_.string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the test
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execl(bin.c_str(), bin.c_str(), "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly",
              "no", "--dir", dir.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid_ < 0) return "fork() failed starting redis-server";
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < end) {
      if (pong(port_)) return {};
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return bin + " exited at start (port " + port + ")";
      }
      std::this_thread::sleep_for(10ms);
    }
    return bin + " did not answer PING on port " + port + " within 10 s";
  }
  static void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  static std::uint16_t port() { return port_; }

 private:
  static inline pid_t pid_ = -1;
  static inline std::uint16_t port_ = 0;
  static inline std::filesystem::path dir_;
};

Config config(std::uint16_t redis_port, const std::string& redis_extra, const std::string& user_limits) {
  const std::string prefix = std::string("tgtest-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::string yaml = R"(
orgs: [{ id: demo }]
models:
  - alias: chat
    deployments: [{ id: chat-sim, provider: sim }]
limits:
  redis: { address: "127.0.0.1:)" + std::to_string(redis_port) + R"(", key_prefix: ")" + prefix +
                     R"(", timeout_ms: 500)" + redis_extra + R"( }
tenants:
  - id: acme
    org: demo
    users: [alice, bob]
    keys: []
    user_limits: )" + user_limits + "\n";
  auto r = load_config(yaml, "test.yaml", [](const std::string&) { return std::optional<std::string>(); });
  if (auto* p = std::get_if<ConfigProblems>(&r)) {
    for (auto& l : p->problems) ADD_FAILURE() << l;
    return Config{};
  }
  return std::get<Config>(r);
}

// A number in a report (null when the scope has no such state yet).
double num(const json::object& report, std::string_view field) {
  const json::value* v = report.if_contains(field);
  return v && v->is_number() ? v->to_number<double>() : -1;
}

limits::Ask ask(std::string_view user, std::int64_t tokens, std::string_view run = {}) {
  limits::Ask a;
  a.org = "demo";
  a.tenant = "acme";
  a.user = user;
  a.model = "chat";
  a.deployment = "chat-sim";
  a.tokens = tokens;
  a.run_id = run;
  a.request_id = "req-test";
  return a;
}

// A RedisLimitStore with everything it needs, on one io_context that the
// test runs by hand. The deadline sweeper is not started: the io_context runs
// out of work once every command (the detached settles too) has finished.
class RedisLimitStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { setup_error_ = RedisServer::start(); }
  static void TearDownTestSuite() { RedisServer::stop(); }
  void SetUp() override {
    if (!setup_error_.empty()) FAIL() << setup_error_;
  }

  void make_store(std::uint16_t port, const std::string& redis_extra, const std::string& user_limits) {
    cfg_ = config(port, redis_extra, user_limits);
    policy_ = std::make_unique<SharedPolicy>(cfg_);
    local_ = limits::in_process_limit_store(
        local_share_config(cfg_, cfg_.limits.redis.fleet_size, cfg_.limits.redis.runs_local_share));
    store_ = std::make_unique<RedisLimitStore>(ioc_.get_executor(), cfg_.limits, sweeper_, *policy_, *local_, stats_);
  }

  template <class T>
  T run(net::awaitable<T> a) {
    std::optional<T> out;
    std::exception_ptr error;
    net::co_spawn(
        ioc_, [&]() -> net::awaitable<void> { out.emplace(co_await std::move(a)); },
        [&](std::exception_ptr e) { error = e; });
    drain();
    if (error) std::rethrow_exception(error);
    if (!out) throw std::runtime_error("the store did not answer within 2 s");
    return std::move(*out);
  }
  // Runs until nothing is left to do: every settle sent has been applied.
  void drain() {
    ioc_.restart();
    ioc_.run_for(2s);
  }

  Expected<limits::Admission> admit(const limits::Ask& a) { return run(store_->admit_async(a)); }
  json::object report(std::string_view scope) {
    auto r = run(store_->report_async(scope));
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? json::parse(*r).as_object() : json::object{};
  }

  static inline std::string setup_error_;
  net::io_context ioc_;
  io::DeadlineSweeper sweeper_{ioc_.get_executor()};
  Config cfg_;
  std::unique_ptr<SharedPolicy> policy_;
  std::unique_ptr<limits::LimitStore> local_;
  RedisLimitStats stats_;
  std::unique_ptr<RedisLimitStore> store_;
};

TEST_F(RedisLimitStoreTest, TokensAreReservedThenSettledExactlyInRedis) {
  // 60 tokens a minute: a refill of one token a second, so every figure below
  // is exact for the second the test takes. (A concurrency limit makes the
  // scope hold a lease per admission, which the report counts.)
  make_store(RedisServer::port(), "", "{ tokens_per_min: 60, concurrency: 5 }");
  auto a = admit(ask("alice", 30));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->quota().tokens.limit, 60);
  EXPECT_EQ(a->quota().tokens.remaining, 30);
  EXPECT_EQ(a->quota().tokens.scope, "user:acme/alice");
  json::object rep = report("user:acme/alice");
  EXPECT_EQ(rep.at("store"), "redis");
  EXPECT_EQ(num(rep, "in_flight"), 1);
  EXPECT_EQ(num(rep, "tokens_level"), 30);

  a->settle(10, 0, 0);  // used 10 of the 30 reserved: 20 come back
  drain();
  rep = report("user:acme/alice");
  EXPECT_EQ(num(rep, "in_flight"), 0) << json::serialize(rep);
  EXPECT_EQ(num(rep, "tokens_level"), 50) << json::serialize(rep);

  auto b = admit(ask("alice", 25));
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->quota().tokens.remaining, 25);
  b->settle(40, 0, 0);  // used more than estimated: charged the 15 extra
  drain();
  auto c = admit(ask("alice", 11));
  ASSERT_FALSE(c.ok()) << "60 - 10 - 40 leaves 10 tokens, not 11";
  EXPECT_EQ(c.error().status, 429);
  EXPECT_EQ(c.error().code, "user_tpm_exhausted");
  // Another user of the tenant has a bucket of its own.
  auto other = admit(ask("bob", 60));
  EXPECT_TRUE(other.ok());
  EXPECT_EQ(stats_.fallbacks.load(), 0);
}

TEST_F(RedisLimitStoreTest, ARequestsPerMinuteLimitRefusesTheNextRequest) {
  make_store(RedisServer::port(), "", "{ requests_per_min: 3 }");
  std::vector<limits::Admission> held;
  for (int i = 0; i < 3; ++i) {
    auto a = admit(ask("alice", 1));
    ASSERT_TRUE(a.ok()) << i << ": " << a.error().message;
    EXPECT_EQ(a->quota().requests.remaining, 2 - i);
    held.push_back(std::move(*a));
  }
  auto refused = admit(ask("alice", 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().status, 429);
  EXPECT_EQ(refused.error().code, "user_rpm_exhausted");
  EXPECT_EQ(refused.error().message, "user 'acme/alice' requests-per-minute limit (3) exhausted; retry after 20s.");
  EXPECT_EQ(refused.error().retry_after_s, 20);
  EXPECT_TRUE(admit(ask("bob", 1)).ok());
  held.clear();  // settled at their estimates
  drain();
  EXPECT_EQ(num(report("user:acme/alice"), "in_flight"), 0);
  EXPECT_EQ(stats_.fallbacks.load(), 0);
}

TEST_F(RedisLimitStoreTest, AnUnreachableRedisFallsBackToThisProcesssShareOfEachLimit) {
  const std::uint16_t dead = free_port();  // nothing listens there
  make_store(dead, ", fleet_size: 2, on_outage: local_share", "{ requests_per_min: 4 }");
  // 4 a minute for a fleet of 2: this process may admit 2.
  for (int i = 0; i < 2; ++i) {
    auto a = admit(ask("alice", 1));
    ASSERT_TRUE(a.ok()) << i << ": " << a.error().message;
  }
  auto refused = admit(ask("alice", 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().status, 429);
  EXPECT_EQ(refused.error().code, "user_rpm_exhausted");
  EXPECT_NE(refused.error().message.find("requests-per-minute limit (2)"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(stats_.fallbacks.load(), 3);
  EXPECT_FALSE(stats_.up.load());
  // Runs fail closed unless runs_on_outage says local_share.
  auto in_run = admit(ask("alice", 1, "run-1"));
  ASSERT_FALSE(in_run.ok());
  EXPECT_EQ(in_run.error().status, 503);
  EXPECT_EQ(in_run.error().code, "limits_unavailable");
}

TEST_F(RedisLimitStoreTest, AnUnreachableRedisRefusesWhenTheLimitsFailClosed) {
  const std::uint16_t dead = free_port();
  make_store(dead, ", on_outage: fail_closed", "{ requests_per_min: 4 }");
  auto r = admit(ask("alice", 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 503);
  EXPECT_EQ(r.error().code, "limits_unavailable");
  EXPECT_EQ(r.error().retry_after_s, 1);
  EXPECT_NE(r.error().message.find("cannot connect to redis at 127.0.0.1:" + std::to_string(dead)), std::string::npos)
      << r.error().message;
  EXPECT_EQ(stats_.fallbacks.load(), 1);
  // The report cannot be had either, and says so.
  auto rep = run(store_->report_async("user:acme/alice"));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.error().code, "limits_unavailable");
}

}  // namespace
}  // namespace tg::store
