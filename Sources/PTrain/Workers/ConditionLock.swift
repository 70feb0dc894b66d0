#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A pthread mutex with one condition variable, for the slow path of waits that
/// spin first. Cost: an uncontended lock/unlock pair is a few tens of nanoseconds.
final class ConditionLock {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

  init() {
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(condition, nil)
  }

  deinit {
    pthread_cond_destroy(condition)
    pthread_mutex_destroy(mutex)
    condition.deallocate()
    mutex.deallocate()
  }

  /// Runs `body` with the mutex held.
  func withLock<T>(_ body: () throws -> T) rethrows -> T {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }

  /// Blocks until `ready()` holds; `ready` is evaluated with the mutex held.
  func wait(until ready: () -> Bool) {
    withLock {
      while !ready() { pthread_cond_wait(condition, mutex) }
    }
  }

  /// Runs `change` with the mutex held, then wakes every waiter.
  func broadcast(after change: () -> Void) {
    withLock {
      change()
      pthread_cond_broadcast(condition)
    }
  }
}
