import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { targetStoreContract } from "../support/store-contract.ts";

targetStoreContract("memory", async () => new MemoryStore());
targetStoreContract("memory, versioned", async () => new MemoryStore({ versioned: true }));
