package domains

import "time"

// The job table. Each domain runs at most one job that changes it: a
// synchronous one (a command: define, start, shutdown, ...) or one
// asynchronous job (save, restore, migrate, dump) that outlives the request
// that started it. domains/owner enforces this; docs/architecture.md, "Jobs".

// JobKind names what a job does. The strings are part of the wire
// contract (job events, job info).
type JobKind string

const (
	JobDefine   JobKind = "define"
	JobUndefine JobKind = "undefine"
	JobStart    JobKind = "start"
	JobShutdown JobKind = "shutdown"
	JobDestroy  JobKind = "destroy"
	JobSuspend  JobKind = "suspend"
	JobResume   JobKind = "resume"
	JobReset    JobKind = "reset"
	// Device verbs (domains/owner/devices.go).
	JobAttachDevice JobKind = "attach-device"
	JobDetachDevice JobKind = "detach-device"
	// JobRecover reattaches to a QEMU after an agent restart or a lost
	// monitor.
	JobRecover JobKind = "recover"

	JobSave    JobKind = "save"
	JobRestore JobKind = "restore"
	JobMigrate JobKind = "migrate"
	JobDump    JobKind = "dump"
	// JobManagedSaveRemove discards a managed save image.
	JobManagedSaveRemove JobKind = "managedsave-remove"
)

// Async reports whether jobs of kind k run in the background, recorded by
// job events, abortable, with progress.
func (k JobKind) Async() bool {
	switch k {
	case JobSave, JobRestore, JobMigrate, JobDump:
		return true
	}
	return false
}

// Why an asynchronous job failed (job-failed's reason).
const (
	JobAborted     = "aborted"     // job abort, or destroy
	JobError       = "error"       // the work itself failed
	JobInterrupted = "interrupted" // the agent stopped or restarted during it
)

// ActiveJob is the running asynchronous job as the projection knows it.
type ActiveJob struct {
	ID        string    `json:"id"`
	Kind      JobKind   `json:"kind"`
	CommandID string    `json:"command_id,omitempty"`
	Started   time.Time `json:"started"`
}

// JobInfo is what `job info` shows: the domain's job, synchronous or not,
// with the last progress an asynchronous one reported.
type JobInfo struct {
	Domain    string       `json:"domain"` // UUID
	ID        string       `json:"id"`
	Kind      JobKind      `json:"kind"`
	Async     bool         `json:"async"`
	CommandID string       `json:"command_id,omitempty"`
	Started   time.Time    `json:"started"`
	Progress  *JobProgress `json:"progress,omitempty"`
}

// JobProgress is an asynchronous job's progress. It goes on NATS
// (vmledger.job.<host>.<uuid>.progress), never into the log.
type JobProgress struct {
	Phase string `json:"phase"`
	Done  uint64 `json:"bytes_done"`
	Total uint64 `json:"bytes_total"` // 0: not known yet
	Rate  uint64 `json:"bytes_per_second"`
	// A live migration's figures (zero for other jobs): the RAM pass,
	// the bytes left in it and the guest's dirty page rate.
	Pass      uint64 `json:"iteration,omitempty"`
	Remaining uint64 `json:"bytes_remaining,omitempty"`
	DirtyRate uint64 `json:"dirty_pages_per_second,omitempty"`
	// Time is when the job reported it.
	Time time.Time `json:"time"`
}

// JobStarted: an asynchronous job began.
type JobStarted struct {
	ID   string  `json:"id"`
	Kind JobKind `json:"kind"`
}

// JobCompleted: the asynchronous job finished its work.
type JobCompleted struct {
	ID   string  `json:"id"`
	Kind JobKind `json:"kind"`
}

// JobFailed: the asynchronous job ended without finishing; Reason is
// aborted, error or interrupted, Error the underlying error's text.
type JobFailed struct {
	ID     string  `json:"id"`
	Kind   JobKind `json:"kind"`
	Reason string  `json:"reason"`
	Error  string  `json:"error,omitempty"`
}

func (JobStarted) EventType() Type   { return TypeJobStarted }
func (JobCompleted) EventType() Type { return TypeJobCompleted }
func (JobFailed) EventType() Type    { return TypeJobFailed }
