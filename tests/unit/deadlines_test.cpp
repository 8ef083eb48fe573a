#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "io/deadlines.h"

namespace tg::io {
namespace {
namespace net = boost::asio;
using tcp = net::ip::tcp;

// A connected loopback pair on one io_context.
struct Pair {
  net::io_context ioc;
  tcp::socket a{ioc}, b{ioc};
  Pair() {
    tcp::acceptor acc(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    a.connect(acc.local_endpoint());
    acc.accept(b);
  }
};

TEST(Deadlines, AnExpiredDeadlineCancelsThePendingRead) {
  Pair p;
  DeadlineSweeper sweeper(p.ioc.get_executor());
  Deadline d(sweeper, p.a);
  char buf[8];
  boost::system::error_code got;
  bool done = false;
  p.a.async_read_some(net::buffer(buf), [&](boost::system::error_code ec, std::size_t) { got = ec; done = true; });
  d.arm(std::chrono::milliseconds(50));
  const auto now = DeadlineSweeper::Clock::now();
  sweeper.sweep(now);  // not yet due
  p.ioc.poll();
  EXPECT_FALSE(done);
  EXPECT_FALSE(d.expired());
  sweeper.sweep(now + std::chrono::milliseconds(60));
  p.ioc.poll();
  EXPECT_TRUE(done);
  EXPECT_EQ(got, net::error::operation_aborted);
  EXPECT_TRUE(d.expired());
  d.arm(std::chrono::milliseconds(50));  // re-arming clears the verdict
  EXPECT_FALSE(d.expired());
}

TEST(Deadlines, DisarmedAndDestroyedDeadlinesNeverFire) {
  Pair p;
  DeadlineSweeper sweeper(p.ioc.get_executor());
  bool done = false;
  char buf[8];
  p.a.async_read_some(net::buffer(buf), [&](boost::system::error_code, std::size_t) { done = true; });
  {
    Deadline d(sweeper, p.a);
    d.arm(std::chrono::milliseconds(1));
    d.disarm();
    sweeper.sweep(DeadlineSweeper::Clock::now() + std::chrono::hours(1));
    EXPECT_FALSE(d.expired());
    Deadline gone(sweeper, p.b);
    EXPECT_EQ(sweeper.registered(), 2u);
  }
  EXPECT_EQ(sweeper.registered(), 0u);
  sweeper.sweep(DeadlineSweeper::Clock::now() + std::chrono::hours(1));
  p.ioc.poll();
  EXPECT_FALSE(done);
  p.a.cancel();
  p.ioc.poll();
  EXPECT_TRUE(done);
}

}  // namespace
}  // namespace tg::io
