"""The processing pipeline: queued jobs become transcripts with speakers and a summary.

- `worker.PipelineWorkers` claims jobs (several at once per process), keeps their leases
  alive, and retries or fails them.
- `job.JobRunner` runs one job through its stages: recognition, diarization, summary.
- `decode.decode_pcm` streams a stored recording out of PostgreSQL as 16 kHz mono PCM.
- `gpu.GpuConnection` is the mTLS channel to gpu_proxy and the calls made over it.
- `store.PipelineStore` is the SQL the pipeline needs beyond the shared repositories.

LiveTranscribe (`meeting_service.live`) reuses the GPU calls, the segment conversion and
the recording store, and hands diarization and the summary to a job.
"""
