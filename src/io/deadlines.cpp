#include "io/deadlines.h"

namespace tg::io {

DeadlineSweeper::DeadlineSweeper(boost::asio::any_io_executor ex) : timer_(ex) {}

void DeadlineSweeper::start() {
  running_ = true;
  schedule();
}

void DeadlineSweeper::stop() {
  running_ = false;
  timer_.cancel();
}

void DeadlineSweeper::schedule() {
  timer_.expires_after(kPeriod);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || !running_) return;
    sweep(Clock::now());
    schedule();
  });
}

void DeadlineSweeper::sweep(Clock::time_point now) {
  for (Deadline* d : *registry_) {
    if (d->at_ > now) continue;
    d->at_ = Clock::time_point::max();
    d->expired_ = true;
    boost::system::error_code ec;
    d->socket_.cancel(ec);  // pending reads/writes complete with operation_aborted
  }
}

Deadline::Deadline(DeadlineSweeper& sweeper, boost::asio::ip::tcp::socket& socket)
    : registry_(sweeper.registry_), socket_(socket) {
  self_ = registry_->insert(registry_->end(), this);
}

Deadline::~Deadline() { registry_->erase(self_); }

void Deadline::arm(std::chrono::milliseconds d) {
  at_ = DeadlineSweeper::Clock::now() + d;
  expired_ = false;
}

void Deadline::disarm() { at_ = DeadlineSweeper::Clock::time_point::max(); }

}  // namespace tg::io
