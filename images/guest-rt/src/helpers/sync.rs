//! kfuncs for critical sections that need nothing here:
//! `bpf_rcu_read_lock/unlock` and `bpf_preempt_disable/enable`.
//!
//! A vCPU runs one program at a time with interrupts off and nothing is
//! freed under it (RCU's job in the kernel), and there is no scheduler to
//! preempt it; the kfuncs exist so that programs written for the kernel
//! load, and do nothing.

/// kfunc `void bpf_rcu_read_lock(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_rcu_read_lock() {}

/// kfunc `void bpf_rcu_read_unlock(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_rcu_read_unlock() {}

/// kfunc `void bpf_preempt_disable(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_preempt_disable() {}

/// kfunc `void bpf_preempt_enable(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn bpf_preempt_enable() {}
